"""What came back about a reader (bounces, complaints, unsubscribes by email), what was done, and why.

Every action is stored with its evidence (the status code, the remote server's diagnostic, the Message-ID
of our message) so the operator can see why a reader stopped getting mail (`subscribers show`), and so
soft bounces can be counted: one full mailbox is no reason to drop a reader, three in a month are.

Each method works inside the caller's transaction: the caller (the inbound processor) records that it has
seen the message in the same transaction, so a message handed over twice acts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subscribers import changes as change_listeners
from subscribers.addresses import address_hash
from subscribers.models import Subscriber, SuppressionReason
from subscribers.schema import subscriber_events, subscribers, suppressions
from subscribers.store_reads import _row_to_subscriber

EventKind = Literal["hard-bounce", "soft-bounce", "complaint", "unsubscribe"]
Action = Literal["bounced", "complained", "unsubscribed", "counted", "none"]


@dataclass(frozen=True)
class Event:
    id: int
    subscriber_id: int
    kind: str
    action: str
    status: str
    diagnostic: str
    message_id: str | None
    edition_id: int | None
    attributed_by: str
    created: datetime


@dataclass(frozen=True)
class SoftBouncePolicy:
    """``limit`` soft bounces within ``window`` make a reader bounced."""

    limit: int = 3
    window: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Report:
    """One report about one reader, as ``EvidenceStore.apply_many`` takes it."""

    subscriber_id: int
    kind: EventKind
    status: str = ""
    diagnostic: str = ""
    message_id: str | None = None
    edition_id: int | None = None
    attributed_by: str = "verp"


_PER_QUERY = 500
"""Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits."""


def _action(kind: EventKind, status: str, soft_before: int, policy: SoftBouncePolicy) -> Action:
    """What one report does to a reader of this status (``EvidenceStore.apply`` says the rules)."""
    if kind == "complaint":
        return "complained" if status != "complained" else "none"
    if status not in ("active", "pending"):
        return "none"
    if kind == "hard-bounce":
        return "bounced"
    if kind == "unsubscribe":
        return "unsubscribed"
    return "bounced" if soft_before + 1 >= policy.limit else "counted"


def _write(connection: Connection, changes: dict[int, dict[str, Any]], suppress: dict[str, SuppressionReason],
           events: list[dict[str, Any]], now: datetime) -> None:
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for subscriber_id, change in changes.items():
        by_columns.setdefault(tuple(sorted(change)), []).append({**change, "b_id": subscriber_id})
    for values in by_columns.values():
        connection.execute(subscribers.update().where(subscribers.c.id == sa.bindparam("b_id")), values)
    if suppress:  # set (or replace) each entry: delete then insert, as ``SubscriberStore._suppress`` does in one
        hashes = {address_hash(email): reason for email, reason in suppress.items()}
        connection.execute(suppressions.delete().where(suppressions.c.address_hash.in_(list(hashes))))
        connection.execute(suppressions.insert(), [{"address_hash": key, "reason": reason, "created": now}
                                                   for key, reason in hashes.items()])
    if events:
        connection.execute(subscriber_events.insert(), events)


class EvidenceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(
        self,
        connection: Connection,
        *,
        subscriber_id: int,
        kind: EventKind,
        now: datetime,
        status: str = "",
        diagnostic: str = "",
        message_id: str | None = None,
        edition_id: int | None = None,
        attributed_by: str = "verp",
        policy: SoftBouncePolicy | None = None,
    ) -> Action | None:
        """Act on one report about one reader and record it; None when there is no such reader.

        A hard bounce acts once (a reader already bounced stays so, the report is kept as ``none``); a soft
        bounce is counted and makes the reader bounced when the policy's limit is reached; a complaint
        suppresses the reader whatever their status; an unsubscribe stops an active or pending reader.
        """
        report = Report(subscriber_id=subscriber_id, kind=kind, status=status, diagnostic=diagnostic,
                        message_id=message_id, edition_id=edition_id, attributed_by=attributed_by)
        return self.apply_many(connection, [report], now=now, policy=policy)[0]

    @staticmethod
    def apply_many(connection: Connection, reports: Sequence[Report], *, now: datetime,
                   policy: SoftBouncePolicy | None = None) -> list[Action | None]:
        """``apply`` for many reports in order, in the caller's transaction, with a few statements in all.

        The readers are read once; each report sees what the reports before it did (a reader bounced by the
        first is not bounced again by the second, a third soft bounce in the same batch reaches the limit),
        and the changes, suppression entries and events are written together at the end.
        """
        chosen = policy or SoftBouncePolicy()
        ids = sorted({r.subscriber_id for r in reports})
        readers: dict[int, Subscriber] = {}
        for start in range(0, len(ids), _PER_QUERY):
            query = sa.select(subscribers).where(subscribers.c.id.in_(ids[start:start + _PER_QUERY]))
            readers.update((row["id"], _row_to_subscriber(row)) for row in connection.execute(query).mappings())
        soft_ids = sorted({r.subscriber_id for r in reports if r.kind == "soft-bounce" and r.subscriber_id in readers})
        soft: dict[int, int] = {}
        for start in range(0, len(soft_ids), _PER_QUERY):
            query = (sa.select(subscriber_events.c.subscriber_id, sa.func.count())
                     .where(subscriber_events.c.subscriber_id.in_(soft_ids[start:start + _PER_QUERY]),
                            subscriber_events.c.kind == "soft-bounce",
                            subscriber_events.c.created > now - chosen.window)
                     .group_by(subscriber_events.c.subscriber_id))
            soft.update((int(i), int(n)) for i, n in connection.execute(query))
        status = {i: r.status for i, r in readers.items()}
        changes: dict[int, dict[str, Any]] = {}
        suppress: dict[str, SuppressionReason] = {}
        events: list[dict[str, Any]] = []
        actions: list[Action | None] = []
        for report in reports:
            reader = readers.get(report.subscriber_id)
            if reader is None:
                actions.append(None)
                continue
            action = _action(report.kind, status[reader.id], soft.get(reader.id, 0), chosen)
            if report.kind == "soft-bounce":
                soft[reader.id] = soft.get(reader.id, 0) + 1
            if action in ("bounced", "complained", "unsubscribed"):
                status[reader.id] = action
                change = changes.setdefault(reader.id, {})
                change.update(status=action, updated=now)
                if action == "unsubscribed":
                    change["unsubscribed_at"] = now
                suppress[reader.email] = action
            events.append({
                "subscriber_id": reader.id, "kind": report.kind, "action": action, "status": report.status[:16],
                "diagnostic": report.diagnostic[:2000],
                "message_id": (report.message_id or None) and report.message_id[:300],
                "edition_id": report.edition_id, "attributed_by": report.attributed_by[:16], "created": now,
            })
            actions.append(action)
        _write(connection, changes, suppress, events, now)
        if changes and change_listeners.listening(connection):  # in the batch's transaction, like the writes
            for reader_id, change in changes.items():
                change_listeners.notify(connection, readers[reader_id], replace(readers[reader_id], **change))
        return actions

    @staticmethod
    def ids_by_email(connection: Connection, emails: Sequence[str]) -> dict[str, int]:
        """The ids of the readers with these addresses (matched in their stored, lower-case normal form)."""
        wanted = sorted({email.strip().lower() for email in emails})
        found: dict[str, int] = {}
        for start in range(0, len(wanted), _PER_QUERY):
            query = sa.select(subscribers.c.email, subscribers.c.id).where(
                subscribers.c.email.in_(wanted[start:start + _PER_QUERY]))
            found.update((str(email), int(i)) for email, i in connection.execute(query))
        return found

    @staticmethod
    def find_by_email(connection: Connection, email: str) -> int | None:
        """The id of the reader with this address (case-insensitive), for reports that only name an address."""
        query = sa.select(subscribers.c.id).where(sa.func.lower(subscribers.c.email) == email.strip().lower())
        found = connection.execute(query).scalars().first()
        return int(found) if found is not None else None

    def events(self, subscriber_id: int) -> list[Event]:
        """Everything recorded about one reader, oldest first."""
        query = (sa.select(subscriber_events).where(subscriber_events.c.subscriber_id == subscriber_id)
                 .order_by(subscriber_events.c.id))
        with self.engine.connect() as connection:
            return [Event(**dict(row)) for row in connection.execute(query).mappings()]
