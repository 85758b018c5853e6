"""Reading the delivery ledger: counts and queries for `send`'s progress, `status`, the scheduler's retry
job, the Celery dispatcher, and the papers a reader's messages carried or still carry.

Kept apart from the writes (claiming, fencing, recording in ``ledger.py``), which are the part whose every
statement has to be right for nothing to be sent twice. ``Ledger`` inherits these methods.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

State = Literal["pending", "claimed", "sent", "deferred", "failed", "ambiguous", "suppressed"]
STATES: tuple[State, ...] = ("pending", "claimed", "sent", "deferred", "failed", "ambiguous", "suppressed")
HALTED_PHASE = "halted"
"""The phase of a pending row whose try was stopped by a halt (a refusal by policy, a session error): its
``last_message`` is the halt's reason, so `send --workers`, which only sees the ledger, can report it."""
CARRYING_STATES = ("sent", "pending", "claimed", "deferred", "ambiguous")
"""Rows whose reader got their message, may still get it, or (ambiguous) may have got it: the papers of
their variant are left out of the reader's other editions. A failed or suppressed row carries nothing, so
its reader can get those papers later."""

deliveries = db.deliveries
variant_papers = db.variant_papers


def due_rows(now: datetime) -> sa.ColumnElement[bool]:
    """Rows a sender may claim at ``now``: pending, or deferred and due."""
    return sa.or_(
        deliveries.c.state == "pending",
        sa.and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now),
    )


class LedgerReads:
    engine: Engine


    def papers_carried(self, subscriber_ids: Collection[int], *, editions_after: datetime,
                       excluding: int | None = None) -> dict[int, set[str]]:
        """Per subscriber, the papers of their rows in ``CARRYING_STATES``: sent, or still on their way.

        The ``sent`` outcome is itself the record that a reader received a variant's papers, written in the
        outcome's own statement, so no separate record can disagree with the ledger. Only editions cut off
        after ``editions_after`` are read: an edition's papers were first seen before its cut-off, so an
        older one shares no paper with a window that starts then.
        """
        wanted = set(subscriber_ids)
        if not wanted:
            return {}
        recent = sa.select(db.editions.c.id).where(db.editions.c.cutoff > editions_after)
        if excluding is not None:
            recent = recent.where(db.editions.c.id != excluding)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.subscriber_id, deliveries.c.edition_id, deliveries.c.variant_key)
                .where(deliveries.c.edition_id.in_(recent), deliveries.c.state.in_(CARRYING_STATES))
            ).all()
            rows = [row for row in rows if row.subscriber_id in wanted]
            if not rows:
                return {}
            carried: dict[tuple[int, str], list[str]] = {}
            for edition_id, key, paper_id in connection.execute(
                sa.select(variant_papers.c.edition_id, variant_papers.c.variant_key, variant_papers.c.paper_id)
                .where(variant_papers.c.edition_id.in_(sorted({row.edition_id for row in rows})))
            ):
                carried.setdefault((int(edition_id), str(key)), []).append(str(paper_id))
        result: dict[int, set[str]] = {}
        for row in rows:
            papers = carried.get((int(row.edition_id), str(row.variant_key)))
            if papers:
                result.setdefault(int(row.subscriber_id), set()).update(papers)
        return result

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

    def live_claim_holders(self, edition_id: int, *, now: datetime) -> dict[str, tuple[int, datetime]]:
        """Claims whose lease has not lapsed, per holder (host:pid): how many, and until when."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.worker, sa.func.count(), sa.func.max(deliveries.c.lease_until)).where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "claimed",
                    deliveries.c.lease_until >= now).group_by(deliveries.c.worker)
            ).all()
        return {str(worker or "?"): (int(count), until) for worker, count, until in rows}

    def due_ids(self, edition_id: int, *, now: datetime) -> list[int]:
        """Ids of the rows a sender could claim now (pending, or deferred and due), in id order."""
        with self.engine.connect() as connection:
            return [int(i) for i in connection.execute(
                sa.select(deliveries.c.id).where(deliveries.c.edition_id == edition_id, due_rows(now))
                .order_by(deliveries.c.id)
            ).scalars()]

    def outstanding(self, edition_id: int, *, due_by: datetime) -> int:
        """Rows still to be tried: pending, claimed, or deferred and due by ``due_by`` (a run's start)."""
        with self.engine.connect() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.edition_id == edition_id,
                    sa.or_(deliveries.c.state.in_(("pending", "claimed")),
                           sa.and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= due_by)))
            ).scalar_one())

    def halt_reason(self, edition_id: int, *, since: datetime) -> str | None:
        """Why a sender halted on a row of the edition at or after ``since`` (the earliest such halt), if one did.

        A row is marked so (state pending, phase ``HALTED_PHASE``) by the sender's outcome and unmarked when it
        is claimed again.
        """
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(deliveries.c.last_message).where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "pending",
                    deliveries.c.phase == HALTED_PHASE, deliveries.c.updated >= since)
                .order_by(deliveries.c.updated, deliveries.c.id).limit(1)
            ).scalar()
        return str(value) if value else None

    def held_until(self, ids: Collection[int]) -> datetime | None:
        """When the last claim on any of these rows lapses (unless its holder renews it); None if none is held.

        A lapsed claim counts too: it is released (to pending or ambiguous) by the next sender that starts.
        """
        if not ids:
            return None
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.max(deliveries.c.lease_until)).where(
                    deliveries.c.id.in_(list(ids)), deliveries.c.state == "claimed")
            ).scalar()
        return value if isinstance(value, datetime) else None

    def next_due(self, edition_id: int) -> datetime | None:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "deferred")
            ).scalar()
        return value if isinstance(value, datetime) else None

    def editions_with_due(self, *, now: datetime) -> list[int]:
        """Editions with deferred rows whose retry time has come (the scheduler's retry job)."""
        with self.engine.connect() as connection:
            query = (
                sa.select(deliveries.c.edition_id).distinct()
                .where(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.edition_id)
            )
            return [int(e) for e in connection.execute(query).scalars()]

    def editions_unfinished(self, *, now: datetime) -> list[int]:
        """Editions a sender could make progress on now: pending rows, claims (lapsed, or of a sender that
        may have died), or deferred rows whose retry time has come."""
        with self.engine.connect() as connection:
            query = (
                sa.select(deliveries.c.edition_id).distinct()
                .where(sa.or_(deliveries.c.state.in_(("pending", "claimed")),
                              sa.and_(deliveries.c.state == "deferred", deliveries.c.next_attempt_at <= now)))
                .order_by(deliveries.c.edition_id)
            )
            return [int(e) for e in connection.execute(query).scalars()]

    def totals(self, *, states: Sequence[str] = ("deferred", "ambiguous")) -> dict[str, int]:
        """Rows in the given states across every edition (what still needs attention)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.state, sa.func.count()).where(deliveries.c.state.in_(states))
                .group_by(deliveries.c.state)
            ).all()
        counts = dict.fromkeys(states, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    def by_worker(self, edition_id: int) -> dict[str, dict[str, int]]:
        """Per sending process (host:pid): rows it finished, by state — progress when several send."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.worker, deliveries.c.state, sa.func.count())
                .where(deliveries.c.edition_id == edition_id, deliveries.c.worker.is_not(None))
                .group_by(deliveries.c.worker, deliveries.c.state)
            ).all()
        result: dict[str, dict[str, int]] = {}
        for worker, state, n in rows:
            result.setdefault(str(worker), {})[str(state)] = int(n)
        return result
