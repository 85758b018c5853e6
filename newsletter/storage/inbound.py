"""Every SQL statement of inbound mail: the log of messages received (and quarantined), the look-up of our
message by its Message-ID, and the bounce and complaint rates of recent editions for `status`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.storage.db import deliveries, editions, inbound_messages
from subscribers.schema import subscriber_events

_PER_QUERY = 500
"""Keys per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits."""


def _bracketed(message_id: str) -> str:
    wanted = message_id.strip()
    return wanted if wanted.startswith("<") else f"<{wanted}>"


def _log_row(*, key: str, now: datetime, door: str, kind: str, outcome: str, subscriber_id: int | None,
             edition_id: int | None, detail: str, raw: bytes | None) -> dict[str, Any]:
    return {"key": key, "received": now, "door": door[:8], "kind": kind[:16], "outcome": outcome[:16],
            "subscriber_id": subscriber_id, "edition_id": edition_id, "detail": detail[:2000], "raw": raw}


@dataclass(frozen=True)
class InboundRecord:
    id: int
    key: str
    received: datetime
    door: str
    kind: str
    outcome: str
    subscriber_id: int | None
    edition_id: int | None
    detail: str


@dataclass(frozen=True)
class EditionRates:
    """What came back about one edition: readers who bounced or complained, against those it reached."""

    edition_id: int
    slug: str
    sent: int
    bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0


class InboundLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def seen(connection: Connection, key: str) -> bool:
        query = sa.select(inbound_messages.c.id).where(inbound_messages.c.key == key)
        return connection.execute(query).first() is not None

    @staticmethod
    def seen_keys(connection: Connection, keys: Sequence[str]) -> set[str]:
        """Which of these message keys are already in the log (one indexed query a few hundred keys)."""
        wanted = sorted(set(keys))
        found: set[str] = set()
        for start in range(0, len(wanted), _PER_QUERY):
            chunk = wanted[start:start + _PER_QUERY]
            query = sa.select(inbound_messages.c.key).where(inbound_messages.c.key.in_(chunk))
            found.update(connection.execute(query).scalars())
        return found

    @staticmethod
    def record_many(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert log rows (the columns of ``record``) with one statement."""
        if rows:
            connection.execute(inbound_messages.insert(), [_log_row(**row) for row in rows])

    @staticmethod
    def record(connection: Connection, *, key: str, now: datetime, door: str, kind: str, outcome: str,
               subscriber_id: int | None, edition_id: int | None, detail: str, raw: bytes | None) -> None:
        connection.execute(inbound_messages.insert().values(_log_row(
            key=key, now=now, door=door, kind=kind, outcome=outcome, subscriber_id=subscriber_id,
            edition_id=edition_id, detail=detail, raw=raw)))

    @staticmethod
    def raws_kept_since(connection: Connection, since: datetime) -> int:
        """How many messages received since ``since`` had their bytes kept (the quarantine's budget)."""
        query = sa.select(sa.func.count()).select_from(inbound_messages).where(
            inbound_messages.c.received >= since, inbound_messages.c.raw.is_not(None))
        return int(connection.execute(query).scalar_one())

    @staticmethod
    def deliveries_for(connection: Connection, message_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``delivery_for`` of many Message-IDs at once (by the index on ``deliveries.message_id``), keyed by
        the Message-ID as given."""
        wanted = {mid: _bracketed(mid) for mid in message_ids}
        values = sorted(set(wanted.values()))
        rows: dict[str, tuple[int, int]] = {}
        for start in range(0, len(values), _PER_QUERY):
            query = sa.select(deliveries.c.message_id, deliveries.c.edition_id, deliveries.c.subscriber_id).where(
                deliveries.c.message_id.in_(values[start:start + _PER_QUERY]))
            rows.update((str(m), (int(e), int(s))) for m, e, s in connection.execute(query))
        return {mid: rows[value] for mid, value in wanted.items() if value in rows}

    @staticmethod
    def delivery_for(connection: Connection, message_id: str) -> tuple[int, int] | None:
        """(edition id, subscriber id) of the message we sent with this Message-ID."""
        query = sa.select(deliveries.c.edition_id, deliveries.c.subscriber_id).where(
            deliveries.c.message_id == _bracketed(message_id))
        row = connection.execute(query).first()
        return (int(row[0]), int(row[1])) if row else None

    def counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """Messages received per outcome (applied, ignored, forged, quarantined, …)."""
        query = sa.select(inbound_messages.c.outcome, sa.func.count()).group_by(inbound_messages.c.outcome)
        if since is not None:
            query = query.where(inbound_messages.c.received >= since)
        with self.engine.connect() as connection:
            return {outcome: int(count) for outcome, count in connection.execute(query)}

    def recent(self, *, outcome: str | None = None, limit: int = 20) -> list[InboundRecord]:
        columns = [c for c in inbound_messages.c if c.name != "raw"]
        query = sa.select(*columns).order_by(inbound_messages.c.id.desc()).limit(limit)
        if outcome is not None:
            query = query.where(inbound_messages.c.outcome == outcome)
        with self.engine.connect() as connection:
            return [InboundRecord(**dict(row)) for row in connection.execute(query).mappings()]

    def quarantined_raw(self, record_id: int) -> bytes | None:
        query = sa.select(inbound_messages.c.raw).where(inbound_messages.c.id == record_id)
        with self.engine.connect() as connection:
            value: Any = connection.execute(query).scalar()
        return bytes(value) if value is not None else None

    def edition_rates(self, *, limit: int = 5) -> list[EditionRates]:
        """Bounce and complaint rates of the newest editions that reached anyone, newest first.

        The newest editions with a ``sent`` row are found first (an indexed look-up per edition), and only
        their rows are counted: the cost stays the same however many editions the ledger holds.
        """
        reached = sa.exists().where(deliveries.c.edition_id == editions.c.id, deliveries.c.state == "sent")
        newest = (sa.select(editions.c.id).where(reached).order_by(editions.c.id.desc()).limit(limit)
                  .scalar_subquery())
        sent = (sa.select(deliveries.c.edition_id, sa.func.count().label("sent"))
                .where(deliveries.c.state == "sent", deliveries.c.edition_id.in_(newest))
                .group_by(deliveries.c.edition_id).subquery())
        query = (sa.select(editions.c.id, editions.c.slug, sent.c.sent)
                 .join(sent, sent.c.edition_id == editions.c.id).order_by(editions.c.id.desc()).limit(limit))
        with self.engine.connect() as connection:
            rows: Sequence[Any] = connection.execute(query).all()
            ids = [int(r[0]) for r in rows]
            per_kind: dict[tuple[int, str], int] = {}
            if ids:
                counted = (sa.select(subscriber_events.c.edition_id, subscriber_events.c.kind,
                                     sa.func.count(sa.distinct(subscriber_events.c.subscriber_id)))
                           .where(subscriber_events.c.edition_id.in_(ids),
                                  subscriber_events.c.action.in_(("bounced", "complained", "counted", "none")))
                           .group_by(subscriber_events.c.edition_id, subscriber_events.c.kind))
                for edition_id, kind, count in connection.execute(counted):
                    per_kind[(int(edition_id), str(kind))] = int(count)
        return [
            EditionRates(
                edition_id=int(r[0]), slug=str(r[1]), sent=int(r[2]),
                bounced=per_kind.get((int(r[0]), "hard-bounce"), 0) + per_kind.get((int(r[0]), "soft-bounce"), 0),
                complained=per_kind.get((int(r[0]), "complaint"), 0),
            )
            for r in rows
        ]
