"""What came back about a reader (bounces, complaints, unsubscribes by email), what was done, and why.

Every action is stored with its evidence (the status code, the remote server's diagnostic, the Message-ID
of our message) so the operator can see why a reader stopped getting mail (`subscribers show`), and so
soft bounces can be counted: one full mailbox is no reason to drop a reader, three in a month are.

Each method works inside the caller's transaction: the caller (the inbound processor) records that it has
seen the message in the same transaction, so a message handed over twice acts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subscribers.schema import subscriber_events, subscribers
from subscribers.store import SubscriberStore

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
        subscriber = SubscriberStore._get(connection, subscriber_id)
        if subscriber is None:
            return None
        action: Action = "none"
        if kind == "complaint":
            if subscriber.status != "complained":
                action = "complained"
        elif subscriber.status in ("active", "pending"):
            if kind == "hard-bounce":
                action = "bounced"
            elif kind == "unsubscribe":
                action = "unsubscribed"
            else:
                action = "counted"
                chosen = policy or SoftBouncePolicy()
                earlier = connection.execute(
                    sa.select(sa.func.count()).select_from(subscriber_events).where(
                        subscriber_events.c.subscriber_id == subscriber_id,
                        subscriber_events.c.kind == "soft-bounce",
                        subscriber_events.c.created > now - chosen.window,
                    )
                ).scalar_one()
                if int(earlier) + 1 >= chosen.limit:
                    action = "bounced"
        if action in ("bounced", "complained"):
            status_value: Literal["bounced", "complained"] = "bounced" if action == "bounced" else "complained"
            SubscriberStore._update(connection, subscriber_id, status=status_value, updated=now)
            SubscriberStore._suppress(connection, subscriber.email, status_value, now)
        elif action == "unsubscribed":
            SubscriberStore._update(connection, subscriber_id, status="unsubscribed", unsubscribed_at=now, updated=now)
            SubscriberStore._suppress(connection, subscriber.email, "unsubscribed", now)
        connection.execute(subscriber_events.insert().values(
            subscriber_id=subscriber_id, kind=kind, action=action, status=status[:16], diagnostic=diagnostic[:2000],
            message_id=(message_id or None) and message_id[:300], edition_id=edition_id,
            attributed_by=attributed_by[:16], created=now,
        ))
        return action

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
