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
from subscribers.evidence import EventKind, EvidenceStore, SoftBouncePolicy
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
        beyond = over_bounds(raw, self.bounds)
        try:
            verdict = (Verdict(kind="unparseable", detector="bounds", reason=f"not read: {beyond}") if beyond
                       else classify(raw, recipients=recipients, addresses=self.addresses))
        except Exception as error:  # noqa: BLE001 - classify is pure: whatever it raises, the input caused
            # the stdlib parser or a detector broke on hostile input: keep the message, never answer 5xx for it
            verdict = Verdict(kind="unparseable", detector="parse", reason=f"cannot be read: {error!r}"[:300])
        key = message_key(raw, verdict, recipients)
        now = self.clock()
        with self.engine.begin() as connection:
            if self.log.seen(connection, key):
                return Outcome(outcome="duplicate", kind=verdict.kind, detail="already processed")
            outcome = self._apply(connection, verdict, now)
            target_edition = None
            if verdict.verp_tokens:
                target = self._verp_target(verdict)
                target_edition = target.edition_id if target else None
            keep = outcome.outcome == "quarantined" and self.log.raws_kept_since(
                connection, now - timedelta(days=1)) < self.settings.quarantine_per_day
            detail = outcome.detail if keep or outcome.outcome != "quarantined" else \
                f"{outcome.detail} (bytes not kept: over quarantine_per_day)"
            self.log.record(
                connection, key=key, now=now, door=door, kind=verdict.kind, outcome=outcome.outcome,
                subscriber_id=outcome.subscriber_ids[0] if outcome.subscriber_ids else None,
                edition_id=target_edition, detail=detail, raw=raw if keep else None,
            )
        return outcome

    def _verp_target(self, verdict: Verdict) -> VerpTarget | None:
        for token in verdict.verp_tokens:
            try:
                return verify_token(self.keyring, token)
            except BadToken:
                continue
        return None

    def _apply(self, connection: Connection, verdict: Verdict, now: datetime) -> Outcome:
        if verdict.kind == "unparseable":
            return Outcome(outcome="quarantined", kind=verdict.kind, detail=verdict.reason)
        if verdict.kind in ("delay", "auto-reply", "other"):
            return Outcome(outcome="ignored", kind=verdict.kind, detail=verdict.reason)
        if verdict.kind == "unsubscribe":
            return self._unsubscribe(connection, verdict, now)
        event: EventKind = "complaint" if verdict.kind == "complaint" else (
            "hard-bounce" if verdict.kind == "hard-bounce" else "soft-bounce")
        targets = self._attribute(connection, verdict)
        if isinstance(targets, Outcome):
            return targets
        ids: list[int] = []
        actions: list[str] = []
        for subscriber_id, edition_id, failure, attributed_by in targets:
            action = self.evidence.apply(
                connection, subscriber_id=subscriber_id, kind=event, now=now,
                status=failure.status if failure else "", diagnostic=failure.diagnostic if failure else verdict.reason,
                message_id=verdict.original_message_id, edition_id=edition_id, attributed_by=attributed_by,
                policy=self.policy,
            )
            if action is not None:
                ids.append(subscriber_id)
                actions.append(action)
        if not ids:
            return Outcome(outcome="unattributed", kind=verdict.kind, detail="the reader no longer exists")
        return Outcome(outcome="applied", kind=verdict.kind, detail=verdict.reason, subscriber_ids=tuple(ids),
                       actions=tuple(actions))

    def _attribute(self, connection: Connection, verdict: Verdict
                   ) -> list[tuple[int, int | None, Failure | None, str]] | Outcome:
        """(reader, edition, the failure about them, how it was attributed), or the forged/unattributed
        outcome when the report holds no signed claim on a reader (see the module docstring)."""
        failures = [f for f in verdict.failures if f.permanent] or list(verdict.failures)
        addresses: dict[str, Failure | None] = {}
        for address, failure in [(f.recipient, f) for f in failures if f.recipient] + \
                [(r, None) for r in verdict.complaint_recipients]:
            addresses.setdefault((address or "").strip().lower(), failure)
        if len(addresses) > MAX_NAMED:  # each of our messages goes to one reader: this is no report about one
            return Outcome(outcome="forged", kind=verdict.kind,
                           detail=f"the report names {len(addresses)} recipients; one of ours names one")
        named: dict[int, Failure | None] = {}
        for address, failure in addresses.items():
            found = self.evidence.find_by_email(connection, address)
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
            return [(target.subscriber_id, target.edition_id, named.get(target.subscriber_id) or first, "verp")]
        if verdict.original_message_id:
            delivery = self.log.delivery_for(connection, verdict.original_message_id)
            if delivery is not None and delivery[1] in named:
                return [(delivery[1], delivery[0], named[delivery[1]] or first, "message-id")]
        return Outcome(outcome="unattributed", kind=verdict.kind,
                       detail=f"{verdict.reason}; no signed token or Message-ID of ours naming that reader")

    def _unsubscribe(self, connection: Connection, verdict: Verdict, now: datetime) -> Outcome:
        for token in verdict.unsubscribe_tokens:
            try:
                subscriber_id = self.tokens.verify("unsubscribe", token)
            except TokenError:
                continue
            action = self.evidence.apply(connection, subscriber_id=subscriber_id, kind="unsubscribe", now=now,
                                         diagnostic=f"mail to the unsubscribe address: {verdict.subject}"[:500],
                                         attributed_by="token")
            if action is None:
                return Outcome(outcome="unattributed", kind=verdict.kind, detail="the reader no longer exists")
            return Outcome(outcome="applied", kind=verdict.kind, detail=verdict.reason,
                           subscriber_ids=(subscriber_id,), actions=(action,))
        if verdict.unsubscribe_tokens:
            return Outcome(outcome="forged", kind=verdict.kind, detail="unsubscribe token does not verify")
        return Outcome(outcome="unattributed", kind=verdict.kind, detail="mail to the unsubscribe address, no token")


def processor_for(settings: Settings, engine: Engine) -> InboundProcessor:
    """The processor of a configured newsletter: [inbound] must name a domain, the signing key must be set."""
    if not settings.inbound.domain:
        raise ConfigError("inbound mail is off: set [inbound] domain (the domain bounces are sent to)",
                          key="inbound.domain")
    variable = settings.newsletter.secret_env
    keyring = Keyring.parse(os.environ.get(variable), variable=variable)
    return InboundProcessor(engine, settings=settings.inbound, keyring=keyring)
