"""One incoming message → its effect, committed in one transaction with the record that it was seen.

Both doors (the SMTP/LMTP listener and the IMAP poller) call :meth:`InboundProcessor.handle` and
acknowledge the message (250, or the IMAP flag) only after it returns: the effect and the log row are
committed together, so a message handed over again after a crash finds its row and acts no more.

Only a signed claim changes a reader (issue 25: the bounce domain's MX is public, and a report that fell
through to the recipient it *named* let anyone bounce or "complain" any reader by address):

* the signed VERP token of the address the report came to, or of the returned message's Return-Path. A
  token that does not verify, tokens naming two readers, or a report that names another reader of ours
  than its token's are ``forged``: nothing changes, the message is counted;
* without a token, our Message-ID in the returned headers, found in the delivery ledger, *and* a report
  that names that same reader. Our Message-IDs are HMACs of edition and reader (``delivery.campaign``), so
  only a copy of that reader's own mail holds one: the same secret a VERP token is;
* anything else is ``unattributed`` and changes nothing, whatever addresses it names.

``handle_batch`` does the same for many messages in one transaction: each is classified, then the readers the
batch names and the Message-IDs it quotes are looked up at once (by index), every report is applied in order
(``EvidenceStore.apply_many``) and the log rows written together; ``handle`` is a batch of one.

Every message is first checked against ``bounds.over_bounds`` (size, lines, parts, nesting) before a
parser sees it; past a bound it is quarantined unread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.engine import Connection, Engine

from newsletter.config import InboundSettings, Settings
from newsletter.delivery.verp import BadToken, VerpTarget, verify_token
from newsletter.errors import ConfigError
from newsletter.inbound.bounds import MessageBounds, over_bounds
from newsletter.inbound.classify import Failure, InboundAddresses, Verdict, classify
from newsletter.storage.inbound import InboundLog
from subscribers.errors import TokenError
from subscribers.evidence import Action, EventKind, EvidenceStore, Report, SoftBouncePolicy
from subscribers.tokens import Keyring, TokenSigner

Door = Literal["smtp", "lmtp", "imap", "cli"]
MAX_NAMED = 10
"""Most distinct recipients a report may name (each is looked up); a report about one of our messages names one."""
OutcomeName = Literal["applied", "ignored", "duplicate", "forged", "unattributed", "quarantined"]


@dataclass(frozen=True)
class Outcome:
    outcome: OutcomeName
    kind: str
    detail: str
    subscriber_ids: tuple[int, ...] = ()
    actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incoming:
    """One message as a door hands it over: its bytes, the envelope recipients, and which door."""

    raw: bytes
    recipients: tuple[str, ...]
    door: Door


@dataclass(frozen=True)
class Prepared:
    """A message with its verdict and log key: what classification hands to the transaction."""

    message: Incoming
    verdict: Verdict
    key: str


@dataclass(frozen=True)
class _Lookups:
    """What a batch's attribution needs from the database, read once: readers by address, our messages by
    Message-ID."""

    readers: dict[str, int]
    deliveries: dict[str, tuple[int, int]]


def addresses_of(settings: InboundSettings) -> InboundAddresses:
    return InboundAddresses(domain=settings.domain, bounce_local_part=settings.bounce_local_part,
                            unsubscribe_local_part=settings.unsubscribe_local_part)


def message_key(raw: bytes, verdict: Verdict, recipients: Sequence[str]) -> str:
    """Same message handed over again → same key: its Message-ID and recipients, else its bytes."""
    if verdict.message_id:
        basis = (verdict.message_id + "|" + ",".join(sorted(r.lower() for r in recipients))).encode()
    else:
        basis = raw
    return hashlib.sha256(basis).hexdigest()


class InboundProcessor:
    def __init__(self, engine: Engine, *, settings: InboundSettings, keyring: Keyring,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.settings = settings
        self.keyring = keyring
        self.tokens = TokenSigner(keyring)
        self.clock = clock
        self.log = InboundLog(engine)
        self.evidence = EvidenceStore(engine)
        self.addresses = addresses_of(settings)
        self.policy = SoftBouncePolicy(limit=settings.soft_bounce_limit,
                                       window=timedelta(days=settings.soft_bounce_days))
        self.bounds = MessageBounds(max_bytes=settings.max_message_bytes, max_lines=settings.max_message_lines,
                                    max_parts=settings.max_mime_parts,
                                    max_containers=settings.max_mime_containers)

    def handle(self, raw: bytes, *, recipients: Sequence[str], door: Door) -> Outcome:
        """Classify, attribute and apply one message; returns what was done once it is committed."""
        return self.handle_batch([Incoming(raw=raw, recipients=tuple(recipients), door=door)])[0]

    def classify(self, message: Incoming) -> Prepared:
        """The verdict on one message (pure: no database), and the key it is logged under."""
        beyond = over_bounds(message.raw, self.bounds)
        try:
            verdict = (Verdict(kind="unparseable", detector="bounds", reason=f"not read: {beyond}") if beyond
                       else classify(message.raw, recipients=message.recipients, addresses=self.addresses))
        except Exception as error:  # noqa: BLE001 - classify is pure: whatever it raises, the input caused
            # the stdlib parser or a detector broke on hostile input: keep the message, never answer 5xx for it
            verdict = Verdict(kind="unparseable", detector="parse", reason=f"cannot be read: {error!r}"[:300])
        return Prepared(message=message, verdict=verdict, key=message_key(message.raw, verdict, message.recipients))

    def handle_batch(self, messages: Sequence[Incoming]) -> list[Outcome]:
        """``handle`` for many messages: each classified, then all attributed, applied and logged in one
        transaction with a few statements (look-ups by index, writes by executemany). Returns the outcomes in
        order once the batch is committed; when the commit fails, none of them took effect."""
        prepared = [self.classify(message) for message in messages]
        now = self.clock()
        with self.engine.begin() as connection:
            return self._apply_batch(connection, prepared, now)

    def _apply_batch(self, connection: Connection, batch: list[Prepared], now: datetime) -> list[Outcome]:
        seen = self.log.seen_keys(connection, [p.key for p in batch])
        fresh: list[Prepared] = []
        for item in batch:
            if item.key not in seen:
                seen.add(item.key)  # the same message twice in one batch acts once too
                fresh.append(item)
        named = [a for p in fresh for a in _named(p.verdict)]
        lookups = _Lookups(
            readers=self.evidence.ids_by_email(connection, named) if named else {},
            deliveries=self.log.deliveries_for(connection, [p.verdict.original_message_id for p in fresh
                                                            if p.verdict.original_message_id]))
        decided: dict[int, Outcome | Report] = {id(p): self._decide(p.verdict, lookups) for p in fresh}
        reports = [r for r in decided.values() if isinstance(r, Report)]
        actions = dict(zip(map(id, reports), EvidenceStore.apply_many(connection, reports, now=now,
                                                                      policy=self.policy), strict=True))
        kept = None
        outcomes: list[Outcome] = []
        records: list[dict[str, object]] = []
        for item in batch:
            if id(item) not in decided:
                outcomes.append(Outcome(outcome="duplicate", kind=item.verdict.kind, detail="already processed"))
                continue
            outcome = _outcome(item.verdict, decided[id(item)], actions)
            keep = False
            if outcome.outcome == "quarantined":
                if kept is None:
                    kept = self.log.raws_kept_since(connection, now - timedelta(days=1))
                keep = kept < self.settings.quarantine_per_day
                kept += keep
            detail = outcome.detail if keep or outcome.outcome != "quarantined" else \
                f"{outcome.detail} (bytes not kept: over quarantine_per_day)"
            target = self._verp_target(item.verdict) if item.verdict.verp_tokens else None
            records.append({"key": item.key, "now": now, "door": item.message.door, "kind": item.verdict.kind,
                            "outcome": outcome.outcome,
                            "subscriber_id": outcome.subscriber_ids[0] if outcome.subscriber_ids else None,
                            "edition_id": target.edition_id if target else None, "detail": detail,
                            "raw": item.message.raw if keep else None})
            outcomes.append(outcome)
        self.log.record_many(connection, records)
        return outcomes

    def _verp_target(self, verdict: Verdict) -> VerpTarget | None:
        for token in verdict.verp_tokens:
            try:
                return verify_token(self.keyring, token)
            except BadToken:
                continue
        return None

    def _decide(self, verdict: Verdict, lookups: _Lookups) -> Outcome | Report:
        """The outcome of a message that changes no reader, or the report to apply to one."""
        if verdict.kind == "unparseable":
            return Outcome(outcome="quarantined", kind=verdict.kind, detail=verdict.reason)
        if verdict.kind in ("delay", "auto-reply", "other"):
            return Outcome(outcome="ignored", kind=verdict.kind, detail=verdict.reason)
        if verdict.kind == "unsubscribe":
            return self._unsubscribe(verdict)
        event: EventKind = "complaint" if verdict.kind == "complaint" else (
            "hard-bounce" if verdict.kind == "hard-bounce" else "soft-bounce")
        target = self._attribute(verdict, lookups)
        if isinstance(target, Outcome):
            return target
        subscriber_id, edition_id, failure, attributed_by = target
        return Report(subscriber_id=subscriber_id, kind=event, status=failure.status if failure else "",
                      diagnostic=failure.diagnostic if failure else verdict.reason,
                      message_id=verdict.original_message_id, edition_id=edition_id, attributed_by=attributed_by)

    def _attribute(self, verdict: Verdict, lookups: _Lookups
                   ) -> tuple[int, int | None, Failure | None, str] | Outcome:
        """(reader, edition, the failure about them, how it was attributed), or the forged/unattributed
        outcome when the report holds no signed claim on a reader (see the module docstring)."""
        failures = _failures(verdict)
        addresses = _addresses(verdict)
        if len(addresses) > MAX_NAMED:  # each of our messages goes to one reader: this is no report about one
            return Outcome(outcome="forged", kind=verdict.kind,
                           detail=f"the report names {len(addresses)} recipients; one of ours names one")
        named: dict[int, Failure | None] = {}
        for address, failure in addresses.items():
            found = lookups.readers.get(address)
            if found is not None:
                named.setdefault(found, failure)
        first = failures[0] if failures else None
        if verdict.verp_tokens:
            targets: set[VerpTarget] = set()
            for token in verdict.verp_tokens:
                try:
                    targets.add(verify_token(self.keyring, token))
                except BadToken:
                    return Outcome(outcome="forged", kind=verdict.kind, detail="VERP token does not verify")
            readers = {t.subscriber_id for t in targets}
            if len(readers) > 1:
                return Outcome(outcome="forged", kind=verdict.kind, detail="VERP tokens name different readers")
            target = min(targets, key=lambda t: t.edition_id)
            if set(named) - readers:
                return Outcome(outcome="forged", kind=verdict.kind,
                               detail="the report names another reader than its VERP token")
            return (target.subscriber_id, target.edition_id, named.get(target.subscriber_id) or first, "verp")
        if verdict.original_message_id:
            delivery = lookups.deliveries.get(verdict.original_message_id)
            if delivery is not None and delivery[1] in named:
                return (delivery[1], delivery[0], named[delivery[1]] or first, "message-id")
        return Outcome(outcome="unattributed", kind=verdict.kind,
                       detail=f"{verdict.reason}; no signed token or Message-ID of ours naming that reader")

    def _unsubscribe(self, verdict: Verdict) -> Outcome | Report:
        for token in verdict.unsubscribe_tokens:
            try:
                subscriber_id = self.tokens.verify("unsubscribe", token)
            except TokenError:
                continue
            return Report(subscriber_id=subscriber_id, kind="unsubscribe",
                          diagnostic=f"mail to the unsubscribe address: {verdict.subject}"[:500], attributed_by="token")
        if verdict.unsubscribe_tokens:
            return Outcome(outcome="forged", kind=verdict.kind, detail="unsubscribe token does not verify")
        return Outcome(outcome="unattributed", kind=verdict.kind, detail="mail to the unsubscribe address, no token")


def _failures(verdict: Verdict) -> list[Failure]:
    return [f for f in verdict.failures if f.permanent] or list(verdict.failures)


def _addresses(verdict: Verdict) -> dict[str, Failure | None]:
    """The recipients a report names (lower case), each with the failure it gives for them."""
    addresses: dict[str, Failure | None] = {}
    for address, failure in [(f.recipient, f) for f in _failures(verdict) if f.recipient] + \
            [(r, None) for r in verdict.complaint_recipients]:
        addresses.setdefault((address or "").strip().lower(), failure)
    return addresses


def _named(verdict: Verdict) -> list[str]:
    """The addresses to look up for a report about readers (none for a report too wide to be one of ours)."""
    if verdict.kind not in ("hard-bounce", "soft-bounce", "complaint"):
        return []
    addresses = _addresses(verdict)
    return list(addresses) if len(addresses) <= MAX_NAMED else []


def _outcome(verdict: Verdict, decided: Outcome | Report, actions: dict[int, Action | None]) -> Outcome:
    if isinstance(decided, Outcome):
        return decided
    action = actions[id(decided)]
    if action is None:
        return Outcome(outcome="unattributed", kind=verdict.kind, detail="the reader no longer exists")
    return Outcome(outcome="applied", kind=verdict.kind, detail=verdict.reason,
                   subscriber_ids=(decided.subscriber_id,), actions=(action,))


def processor_for(settings: Settings, engine: Engine) -> InboundProcessor:
    """The processor of a configured newsletter: [inbound] must name a domain, the signing key must be set."""
    if not settings.inbound.domain:
        raise ConfigError("inbound mail is off: set [inbound] domain (the domain bounces are sent to)",
                          key="inbound.domain")
    variable = settings.newsletter.secret_env
    keyring = Keyring.parse(os.environ.get(variable), variable=variable)
    return InboundProcessor(engine, settings=settings.inbound, keyring=keyring)
