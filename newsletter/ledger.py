"""The delivery ledger: one row per (edition, subscriber), and the only judge of what was sent.

States: pending → claimed → sent | deferred | failed | ambiguous | suppressed (deferred rows come back
when due). A row's SMTP phase is committed *before* its message's DATA is sent, so whatever instant a
process dies at, a row either never reached DATA (its claim expires and it is sent later) or did
(it becomes ``ambiguous`` and is never resent automatically: an operator decides).

Claims are atomic batches marked with a claim token and a lease; a live sender renews its lease.
Every statement is portable SQL (SQLite by default, PostgreSQL later).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from newsletter import db

State = Literal["pending", "claimed", "sent", "deferred", "failed", "ambiguous", "suppressed"]
STATES: tuple[State, ...] = ("pending", "claimed", "sent", "deferred", "failed", "ambiguous", "suppressed")
FINAL_STATES = frozenset({"sent", "failed", "ambiguous", "suppressed"})
DATA_PHASE = "data"

deliveries = db.deliveries
variants = db.variants


@dataclass(frozen=True, kw_only=True)
class NewDelivery:
    subscriber_id: int
    email: str
    name: str
    variant_key: str
    message_id: str
    paper_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Delivery:
    id: int
    edition_id: int
    subscriber_id: int
    email: str
    name: str
    variant_key: str
    message_id: str
    attempts: int
    created: datetime


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What happened to one claimed row; ``state`` is where it goes next."""

    delivery_id: int
    state: State
    phase: str = ""
    code: int | None = None
    message: str = ""
    count_attempt: bool = True
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class StoredVariant:
    edition_id: int
    key: str
    subject: str
    html: str
    text: str
    nonce: str


def _insert(engine: Engine, table: sa.Table) -> Any:
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database {engine.dialect.name}")  # pragma: no cover


class Ledger:
    def __init__(self, engine: Engine, *, worker: str = "") -> None:
        self.engine = engine
        self.worker = worker

    # --- filling ------------------------------------------------------------------------------------------

    def save_variants(self, rows: Iterable[StoredVariant], *, now: datetime) -> None:
        values = [
            {"edition_id": v.edition_id, "key": v.key, "subject": v.subject, "html": v.html, "text": v.text,
             "nonce": v.nonce, "created": now}
            for v in rows
        ]
        if values:
            with self.engine.begin() as connection:
                connection.execute(_insert(self.engine, variants), values)

    def variant(self, edition_id: int, key: str) -> StoredVariant:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(variants).where(variants.c.edition_id == edition_id, variants.c.key == key)
            ).mappings().one()
        return StoredVariant(row["edition_id"], row["key"], row["subject"], row["html"], row["text"], row["nonce"])

    def variant_keys(self, edition_id: int) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(sa.select(variants.c.key).where(variants.c.edition_id == edition_id))
                       .scalars())

    def subscribers_with_rows(self, edition_id: int) -> set[int]:
        with self.engine.connect() as connection:
            query = sa.select(deliveries.c.subscriber_id).where(deliveries.c.edition_id == edition_id)
            return set(connection.execute(query).scalars())

    def add(self, edition_id: int, rows: Sequence[NewDelivery], *, now: datetime,
            connection: sa.Connection | None = None) -> int:
        """Insert pending rows; a (edition, subscriber) pair that already has one keeps it. Returns rows added."""
        values = [
            {"edition_id": edition_id, "subscriber_id": r.subscriber_id, "email": r.email, "name": r.name,
             "variant_key": r.variant_key, "message_id": r.message_id, "state": "pending", "phase": "",
             "attempts": 0, "created": now, "updated": now}
            for r in rows
        ]
        if not values:
            return 0
        if connection is not None:
            return int(connection.execute(_insert(self.engine, deliveries), values).rowcount or 0)
        with self.engine.begin() as own:
            return int(own.execute(_insert(self.engine, deliveries), values).rowcount or 0)

    # --- claiming -----------------------------------------------------------------------------------------

    def release_expired(self, edition_id: int, *, now: datetime) -> tuple[int, int]:
        """Free the claims of dead processes: rows that reached DATA become ambiguous, the others pending."""
        expired = sa.and_(
            deliveries.c.edition_id == edition_id,
            deliveries.c.state == "claimed",
            deliveries.c.lease_until < now,
        )
        with self.engine.begin() as connection:
            ambiguous = connection.execute(
                deliveries.update()
                .where(expired, deliveries.c.phase == DATA_PHASE)
                .values(state="ambiguous", claim_token=None, updated=now,
                        last_message="the sending process stopped after DATA was sent; not resent")
            ).rowcount
            released = connection.execute(
                deliveries.update().where(expired).values(state="pending", claim_token=None, phase="", updated=now)
            ).rowcount
        return int(released or 0), int(ambiguous or 0)

    def suppress_inactive(self, edition_id: int, *, active_subscribers: sa.Select[Any], now: datetime) -> int:
        """Rows whose subscriber is no longer active are suppressed, checked again at every claim."""
        with self.engine.begin() as connection:
            result = connection.execute(
                deliveries.update()
                .where(
                    deliveries.c.edition_id == edition_id,
                    deliveries.c.state.in_(("pending", "deferred")),
                    ~deliveries.c.subscriber_id.in_(active_subscribers),
                )
                .values(state="suppressed", updated=now, last_message="subscriber is not active")
            )
        return int(result.rowcount or 0)

    def claim(self, edition_id: int, *, limit: int, now: datetime, lease: timedelta) -> list[Delivery]:
        """Atomically take up to ``limit`` due rows for this process."""
        token = uuid.uuid4().hex
        due = sa.or_(
            deliveries.c.state == "pending",
            sa.and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now),
        )
        candidates = (
            sa.select(deliveries.c.id)
            .where(deliveries.c.edition_id == edition_id, due)
            .order_by(deliveries.c.id)
            .limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        with self.engine.begin() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(candidates.scalar_subquery()))
                .values(state="claimed", claim_token=token, lease_until=now + lease, phase="", worker=self.worker,
                        updated=now)
            )
            rows = connection.execute(
                sa.select(deliveries).where(deliveries.c.claim_token == token, deliveries.c.state == "claimed")
                .order_by(deliveries.c.id)
            ).mappings().all()
        return [
            Delivery(id=r["id"], edition_id=r["edition_id"], subscriber_id=r["subscriber_id"], email=r["email"],
                     name=r["name"], variant_key=r["variant_key"], message_id=r["message_id"],
                     attempts=r["attempts"], created=r["created"])
            for r in rows
        ]

    def renew(self, ids: Sequence[int], *, until: datetime) -> None:
        if ids:
            with self.engine.begin() as connection:
                connection.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_(ids), deliveries.c.state == "claimed")
                    .values(lease_until=until)
                )

    def release(self, ids: Sequence[int], *, now: datetime) -> int:
        """Give back claimed rows that never reached DATA (a clean stop)."""
        if not ids:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids), deliveries.c.state == "claimed", deliveries.c.phase != DATA_PHASE)
                .values(state="pending", claim_token=None, phase="", updated=now)
            )
        return int(result.rowcount or 0)

    # --- recording ----------------------------------------------------------------------------------------

    def record(self, *, data_phase: Sequence[int], outcomes: Sequence[Outcome], now: datetime) -> None:
        """One transaction: mark rows about to send DATA, and store finished outcomes (group commit)."""
        with self.engine.begin() as connection:
            if data_phase:
                connection.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_(data_phase), deliveries.c.state == "claimed")
                    .values(phase=DATA_PHASE, updated=now)
                )
            if outcomes:
                statement = (
                    deliveries.update()
                    .where(deliveries.c.id == sa.bindparam("row_id"), deliveries.c.state == "claimed")
                    .values(
                        state=sa.bindparam("new_state"),
                        phase=sa.bindparam("new_phase"),
                        attempts=deliveries.c.attempts + sa.bindparam("attempt"),
                        next_attempt_at=sa.bindparam("next_at"),
                        last_code=sa.bindparam("code"),
                        last_message=sa.bindparam("msg"),
                        sent_at=sa.bindparam("sent"),
                        claim_token=None,
                        updated=now,
                    )
                )
                connection.execute(
                    statement,
                    [
                        {"row_id": o.delivery_id, "new_state": o.state, "new_phase": o.phase,
                         "attempt": 1 if o.count_attempt else 0, "next_at": o.next_attempt_at, "code": o.code,
                         "msg": o.message[:1000], "sent": now if o.state == "sent" else None}
                        for o in outcomes
                    ],
                )

    # --- reading ------------------------------------------------------------------------------------------

    def counts(self, edition_id: int) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.state, sa.func.count())
                .where(deliveries.c.edition_id == edition_id)
                .group_by(deliveries.c.state)
            ).all()
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    def rows(self, edition_id: int, *, state: State) -> list[Mapping[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(
                sa.select(deliveries).where(deliveries.c.edition_id == edition_id, deliveries.c.state == state)
                .order_by(deliveries.c.id)
            ).mappings()]

    def live_claims(self, edition_id: int, *, now: datetime) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "claimed",
                    deliveries.c.lease_until >= now)
            ).scalar_one())

    def next_due(self, edition_id: int) -> datetime | None:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "deferred")
            ).scalar()
        return value if isinstance(value, datetime) else None
