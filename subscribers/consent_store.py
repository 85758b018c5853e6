"""Consent records carried by an export and restored by import, so `export` → `import` loses nothing.

A row of ``subscribers export`` carries the reader's status, how and when consent was given (``source``,
``consent_at``/``consent_ip``, ``confirmed_at``/``confirmed_ip``), when they left (``unsubscribed_at``),
their suppression entry (``suppression``, ``suppressed_at``) and what came back by mail about them with its
evidence (``evidence``: JSON). Importing such a row restores these exactly into a database that does not know
the address, and into one that does it never turns a reader active who is not (unsubscribed, bounced,
complained or pending) unless ``force``: the row is reported as kept instead. A reader the file says left
(unsubscribed, bounced, complained) is marked so, with the suppression entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from subscribers.addresses import address_hash
from subscribers.errors import SuppressedError
from subscribers.models import STATUSES, Frequency, Status, Subscriber, SuppressionReason
from subscribers.schema import SOURCES, SUPPRESSION_REASONS, subscriber_events, suppressions
from subscribers.store import SubscriberStore

LEFT: frozenset[str] = frozenset({"unsubscribed", "bounced", "complained"})
"""Statuses of readers who must get no email: each has a suppression entry."""
CARRIED_COLUMNS = ("status", "source", "consent_at", "consent_ip", "confirmed_at", "confirmed_ip",
                   "unsubscribed_at", "created", "suppression", "suppressed_at", "evidence")
_EVENT_FIELDS = ("kind", "action", "status", "diagnostic", "message_id", "attributed_by", "created")

Outcome = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True, kw_only=True)
class Carried:
    """What an export row says about consent, checked (``parse_carried``)."""

    status: Status
    source: str = "import"
    consent_at: datetime | None = None
    consent_ip: str | None = None
    confirmed_at: datetime | None = None
    confirmed_ip: str | None = None
    unsubscribed_at: datetime | None = None
    created: datetime | None = None
    suppression: SuppressionReason | None = None
    suppressed_at: datetime | None = None
    evidence: tuple[dict[str, Any], ...] = field(default=())


def _when(value: str, column: str, problems: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{column}: not a date and time: {value!r}")
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_carried(values: dict[str, str], problems: list[str]) -> Carried | None:
    """The consent record of a row with a ``status`` cell (an export); None for a plain import row."""
    status = values.get("status", "").lower()
    if not status:
        return None
    if status not in STATUSES:
        problems.append(f"unknown status {values['status']!r}; expected one of: {', '.join(STATUSES)}")
        return None
    source = values.get("source", "").lower() or "import"
    if source not in SOURCES:
        problems.append(f"unknown source {values['source']!r}; expected one of: {', '.join(SOURCES)}")
    suppression = values.get("suppression", "").lower() or None
    if suppression is not None and suppression not in SUPPRESSION_REASONS:
        problems.append(f"unknown suppression {values['suppression']!r}; expected one of: "
                        f"{', '.join(SUPPRESSION_REASONS)}")
    evidence: list[dict[str, Any]] = []
    if values.get("evidence"):
        try:
            loaded = json.loads(values["evidence"])
            if not isinstance(loaded, list) or not all(isinstance(e, dict) for e in loaded):
                raise ValueError("not a list of events")
            evidence = [{k: e.get(k) for k in _EVENT_FIELDS} for e in loaded]
            for event in evidence:
                event["created"] = _when(str(event["created"] or ""), "evidence created", problems)
                if event["created"] is None or not event["kind"] or not event["action"]:
                    raise ValueError("an event lacks its kind, action or time")
        except ValueError as error:
            problems.append(f"evidence: not the JSON an export writes ({error})")
    return Carried(
        status=status, source=source,
        consent_at=_when(values.get("consent_at", ""), "consent_at", problems),
        consent_ip=values.get("consent_ip") or None,
        confirmed_at=_when(values.get("confirmed_at", ""), "confirmed_at", problems),
        confirmed_ip=values.get("confirmed_ip") or None,
        unsubscribed_at=_when(values.get("unsubscribed_at", ""), "unsubscribed_at", problems),
        created=_when(values.get("created", ""), "created", problems),
        suppression=cast(SuppressionReason | None, suppression),
        suppressed_at=_when(values.get("suppressed_at", ""), "suppressed_at", problems),
        evidence=tuple(evidence),
    )


def export_extras(connection: Connection, subscriber: Subscriber) -> dict[str, str]:
    """The suppression entry and the mail-back evidence of one reader, as export cells."""
    entry = connection.execute(
        sa.select(suppressions).where(suppressions.c.address_hash == address_hash(subscriber.email))
    ).mappings().first()
    events = connection.execute(
        sa.select(*(subscriber_events.c[name] for name in _EVENT_FIELDS))
        .where(subscriber_events.c.subscriber_id == subscriber.id).order_by(subscriber_events.c.id)
    ).mappings().all()
    evidence = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in e.items()} for e in events]
    return {
        "suppression": str(entry["reason"]) if entry else "",
        "suppressed_at": entry["created"].isoformat() if entry else "",
        "evidence": json.dumps(evidence, ensure_ascii=False, separators=(",", ":")) if evidence else "",
    }


def restore(store: SubscriberStore, connection: Connection, email: str, carried: Carried, *, now: datetime,
            name: str | None, topics: tuple[str, ...] | None, frequency: Frequency | None,
            force: bool) -> tuple[Outcome, Subscriber]:
    """Import one export row in the caller's transaction (see the module docstring for what is kept)."""
    existing = store._get_by_email(connection, email)
    entry = store._suppression(connection, email)
    if existing is None:
        if entry is not None and not force and (entry.reason == "deleted" or carried.status not in LEFT):
            raise SuppressedError(email, entry.reason)
        return "added", _insert(store, connection, email, carried, now=now, name=name, topics=topics,
                                frequency=frequency, force=force)
    changes: dict[str, Any] = {}
    if name is not None and " ".join(name.split()) != existing.name:
        changes["name"] = " ".join(name.split())
    if topics and tuple(topics) != existing.topics:
        changes["topics"] = list(topics)
    if frequency is not None and frequency != existing.frequency:
        changes["frequency"] = frequency
    if carried.status != existing.status:
        if carried.status in LEFT:  # the file says they left: never email them again
            changes.update(status=carried.status, unsubscribed_at=carried.unsubscribed_at or now)
            store._suppress(connection, email, carried.suppression or _reason(carried.status),
                            carried.suppressed_at or now)
        elif existing.status in LEFT:
            if not force:
                raise SuppressedError(email, existing.status)
            store._unsuppress(connection, email)
            changes.update(status=carried.status, unsubscribed_at=None)
        elif existing.status == "pending" and force:
            changes.update(status=carried.status)
        # else kept: a sign-up never confirmed stays pending (its consent is not in the file either), and an
        # active reader is never moved back to pending
    if not changes:
        return "unchanged", existing
    return "updated", store._update(connection, existing.id, updated=now, **changes)


def _reason(status: str) -> SuppressionReason:
    return cast(SuppressionReason, status if status in SUPPRESSION_REASONS else "operator")


def _insert(store: SubscriberStore, connection: Connection, email: str, carried: Carried, *, now: datetime,
            name: str | None, topics: tuple[str, ...] | None, frequency: Frequency | None,
            force: bool) -> Subscriber:
    if store._suppression(connection, email) is not None and (force and carried.status not in LEFT):
        store._unsuppress(connection, email)
    subscriber = store._insert(connection, {
        "email": email,
        "name": " ".join((name or "").split()),
        "status": carried.status,
        "topics": list(topics if topics else store.default_topics()),
        "frequency": frequency or "daily",
        "source": carried.source if carried.source in SOURCES else "import",
        "consent_at": carried.consent_at or now,
        "consent_ip": carried.consent_ip,
        "confirmed_at": carried.confirmed_at,
        "confirmed_ip": carried.confirmed_ip,
        "unsubscribed_at": carried.unsubscribed_at,
        "created": carried.created or now,
        "updated": now,
    })
    if (carried.status in LEFT or carried.suppression is not None) and store._suppression(connection, email) is None:
        store._suppress(connection, email, carried.suppression or _reason(carried.status),
                        carried.suppressed_at or carried.unsubscribed_at or now)
    if carried.evidence:
        connection.execute(subscriber_events.insert(), [
            {**{k: event[k] for k in _EVENT_FIELDS}, "subscriber_id": subscriber.id, "edition_id": None,
             "message_id": event["message_id"], "status": str(event["status"] or ""),
             "diagnostic": str(event["diagnostic"] or ""), "attributed_by": str(event["attributed_by"] or "")}
            for event in carried.evidence
        ])
    return subscriber
