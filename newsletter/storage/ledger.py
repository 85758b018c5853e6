"""The delivery ledger: one row per (edition, subscriber), and the only judge of what was sent.

States: pending → claimed → sent | deferred | failed | ambiguous | suppressed (deferred rows come back
when due). A row's ``data`` phase is committed *before* its message content is sent (once the relay has
accepted MAIL, RCPT and DATA), so whatever instant a process dies at, a row either never reached that
point (its claim expires and it is sent later) or did (it becomes ``ambiguous`` and is never resent
automatically: an operator decides).

Claims are atomic batches marked with a claim token and a lease; a live sender renews its lease. Every
write to a claimed row (mark DATA, store an outcome, renew, release, suppress) is fenced by that token: a
sender paused past its lease, whose rows another sender has since claimed, finds its writes match nothing,
learns before DATA that the row is no longer its own, and does not send it.
Every statement is portable SQL (SQLite by default, PostgreSQL later).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db
from newsletter.storage import ledger_tallies as tallies
from newsletter.storage.bulk import BulkStatement, BulkStatements, insert_new_many
from newsletter.storage.ledger_reads import HALTED_PHASE as HALTED_PHASE
from newsletter.storage.ledger_reads import STATES as STATES
from newsletter.storage.ledger_reads import State as State

FINAL_STATES = frozenset({"sent", "failed", "ambiguous", "suppressed"})
DATA_PHASE = "data"

deliveries = db.deliveries
variants = db.variants
variant_papers = db.variant_papers

_DELIVERY_COLUMNS = [deliveries.c[name] for name in (
    "id", "edition_id", "subscriber_id", "email", "name", "variant_key", "message_id", "attempts", "created",
    "claim_token")]
_DELIVERY_NAMES = tuple(column.name for column in _DELIVERY_COLUMNS)
_CLAIMED_ROW = sa.and_(deliveries.c.id == sa.bindparam("row_id"), deliveries.c.state == "claimed",
                       deliveries.c.claim_token == sa.bindparam("token"))
_MARK_DATA = deliveries.update().where(_CLAIMED_ROW).values(phase=DATA_PHASE, updated=sa.bindparam("now"))
_STORE_OUTCOME = (
    deliveries.update()
    .where(_CLAIMED_ROW)
    .values(
        state=sa.bindparam("new_state"),
        phase=sa.bindparam("new_phase"),
        attempts=deliveries.c.attempts + sa.bindparam("attempt"),
        next_attempt_at=sa.bindparam("next_at"),
        last_code=sa.bindparam("code"),
        last_message=sa.bindparam("msg"),
        sent_at=sa.bindparam("sent"),
        claim_token=None,
        updated=sa.bindparam("now"),
    )
)

_MARK_DATA_BULK = BulkStatements(_MARK_DATA)
_STORE_OUTCOME_BULK = BulkStatements(_STORE_OUTCOME)
"""Both run for every few messages sent: compiled once, run as one driver executemany (``storage.bulk``)."""


@dataclass(frozen=True, kw_only=True)
class NewDelivery:
    subscriber_id: int
    email: str
    name: str
    variant_key: str
    message_id: str


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
    claim_token: str = ""
    """The claim this process holds on the row; every write to the row names it (fencing)."""


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
    claim_token: str = ""
    """The claim under which the row was sent: an outcome for a row since claimed by another is dropped."""


@dataclass(frozen=True)
class StoredVariant:
    edition_id: int
    key: str
    subject: str
    html: str
    text: str
    nonce: str
    paper_ids: tuple[str, ...] = ()
    """The papers its email carries: they count as sent to a reader once that reader's row is ``sent``."""


class Ledger(tallies.TallyReads):
    def __init__(self, engine: Engine, *, worker: str = "") -> None:
        self.engine = engine
        self.worker = worker
        self._claimed_editions: dict[int, int] = {}
        """Row id → edition of the rows this ledger claimed and has stored no outcome for: the tallies of an
        outcome need its row's edition, which is then known without a read."""

    # --- filling ------------------------------------------------------------------------------------------

    def save_variants(self, rows: Iterable[StoredVariant], *, now: datetime) -> None:
        """Store rendered variants and the papers each carries (a variant already stored is kept)."""
        rows = list(rows)
        values = [
            {"edition_id": v.edition_id, "key": v.key, "subject": v.subject, "html": v.html, "text": v.text,
             "nonce": v.nonce, "created": now}
            for v in rows
        ]
        papers = [
            {"edition_id": v.edition_id, "variant_key": v.key, "paper_id": paper_id}
            for v in rows for paper_id in dict.fromkeys(v.paper_ids)
        ]
        if values:
            with self.engine.begin() as connection:
                connection.execute(db.insert_ignoring_duplicates(self.engine, variants), values)
                if papers:
                    connection.execute(db.insert_ignoring_duplicates(self.engine, variant_papers), papers)

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
            return self._add(connection, edition_id, values)
        with self.engine.begin() as own:
            return self._add(own, edition_id, values)

    @staticmethod
    def _add(connection: sa.Connection, edition_id: int, values: list[dict[str, Any]]) -> int:
        added = insert_new_many(connection, deliveries, values)
        changes = tallies.TallyChanges()
        changes.add(edition_id, "pending", added)
        changes.write(connection)
        return added

    # --- claiming -----------------------------------------------------------------------------------------

    def release_expired(self, edition_id: int, *, now: datetime,
                        dead_workers: Collection[str] = ()) -> tuple[int, int]:
        """Free the claims of dead processes: rows that reached DATA become ambiguous, the others pending.

        A claim is free once its lease lapsed, or at once when its holder is in ``dead_workers`` (a sender
        known to be dead: same host, its pid gone), so a resume right after a crash need not wait a lease.
        """
        lapsed: sa.ColumnElement[bool] = deliveries.c.lease_until < now
        if dead_workers:
            lapsed = sa.or_(lapsed, deliveries.c.worker.in_(list(dead_workers)))
        expired = sa.and_(
            deliveries.c.edition_id == edition_id,
            deliveries.c.state == "claimed",
            lapsed,
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
            changes = tallies.TallyChanges()
            changes.move(edition_id, "claimed", "ambiguous", int(ambiguous or 0))
            changes.move(edition_id, "claimed", "pending", int(released or 0))
            changes.write(connection)
        return int(released or 0), int(ambiguous or 0)

    def claim_holders(self, edition_id: int) -> set[str]:
        """The senders (host:pid) holding claims on the edition's rows, lapsed or not."""
        with self.engine.connect() as connection:
            return {str(w) for w in connection.execute(
                sa.select(deliveries.c.worker).distinct().where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "claimed",
                    deliveries.c.worker.is_not(None))
            ).scalars()}

    def suppress_inactive(self, ids: Sequence[int], *, active_subscribers: sa.Select[Any], now: datetime,
                          tokens: Collection[str] | None = None) -> set[int]:
        """Of these just-claimed rows, suppress those whose subscriber is no longer active; returns their ids.

        Run on every claimed batch, so an unsubscribe or a bounce recorded while an edition is being sent
        stops the rows not yet claimed (and costs a lookup per claimed row, not a scan of the edition).
        """
        if not ids:
            return set()
        # Correlated (NOT EXISTS … WHERE id = this row's subscriber): a primary-key lookup per row. The plain
        # ``NOT IN (SELECT id … WHERE active)`` read every active subscriber once per batch: at 100,000 readers
        # that was 200 batches × 100,000 ids, the send's cost growing with the square of the list.
        active = active_subscribers.where(active_subscribers.selected_columns[0] == deliveries.c.subscriber_id)
        inactive = sa.and_(deliveries.c.id.in_(list(ids)), deliveries.c.state == "claimed", ~active.exists())
        if tokens is not None:
            inactive = sa.and_(inactive, deliveries.c.claim_token.in_(list(tokens)))
        with self.engine.begin() as connection:
            found = set(connection.execute(sa.select(deliveries.c.id).where(inactive)).scalars())
            if found:
                moved = connection.execute(
                    deliveries.update()
                    .where(inactive, deliveries.c.id.in_(found))
                    .values(state="suppressed", claim_token=None, updated=now, last_message="subscriber is not active")
                    .returning(deliveries.c.edition_id)
                ).scalars().all()
                changes = tallies.TallyChanges()
                changes.move_each(moved, "claimed", "suppressed")
                changes.write(connection)
        return found

    def claim(self, edition_id: int, *, limit: int, now: datetime, lease: timedelta,
              only: Collection[int] | None = None) -> list[Delivery]:
        """Atomically take up to ``limit`` due rows for this process (of ``only`` these rows, when given).

        On PostgreSQL the candidates are locked with FOR UPDATE SKIP LOCKED: concurrent claimers never wait
        for each other and never take the same row.
        """
        token = uuid.uuid4().hex
        # The first ``limit`` due rows by id are the first ``limit`` of (the first ``limit`` pending rows) and (the
        # first ``limit`` deferred rows now due): each of those reads an (edition, state, id) index in order and
        # stops after ``limit`` rows. One query with the OR read and sorted every row of the edition instead, on
        # every batch: a send's claims cost grew with the square of the list (docs/benchmarks.md, issue 30).
        parts = [
            sa.select(deliveries.c.id).where(deliveries.c.edition_id == edition_id, deliveries.c.state == "pending"),
            sa.select(deliveries.c.id).where(deliveries.c.edition_id == edition_id, deliveries.c.state == "deferred",
                                             deliveries.c.next_attempt_at <= now),
        ]
        if only is not None:
            parts = [part.where(deliveries.c.id.in_(list(only))) for part in parts]
        parts = [part.order_by(deliveries.c.id).limit(limit) for part in parts]
        claimed = {"state": "claimed", "claim_token": token, "lease_until": now + lease, "phase": "",
                   "worker": self.worker, "updated": now}
        pending_part, deferred_part = parts
        with self.engine.begin() as connection:
            # Two UPDATEs, one per source state, so that each one's row count says how many rows left that state
            # (the tallies, ``ledger_tallies``); together they claim the same rows as the first ``limit`` due ones.
            if self.engine.dialect.name == "postgresql":
                # Lock the candidates first, in statements of their own: a LIMIT … SKIP LOCKED subquery inside
                # the UPDATE may be run more than once by PostgreSQL and then claim more than ``limit`` rows (and
                # FOR UPDATE is not allowed on a UNION). Rows locked here but not chosen are free at commit.
                locked_pending = set(connection.execute(pending_part.with_for_update(skip_locked=True)).scalars())
                locked_deferred = set(connection.execute(deferred_part.with_for_update(skip_locked=True)).scalars())
                chosen = sorted(locked_pending | locked_deferred)[:limit]
                if not chosen:
                    return []
                from_pending = from_deferred = 0
                # locked, but re-checked: another claim may have taken them before the lock
                if chosen_pending := [i for i in chosen if i in locked_pending]:
                    from_pending = connection.execute(
                        deliveries.update().where(deliveries.c.id.in_(chosen_pending), deliveries.c.state == "pending")
                        .values(**claimed)
                    ).rowcount
                if chosen_deferred := [i for i in chosen if i in locked_deferred]:
                    from_deferred = connection.execute(
                        deliveries.update()
                        .where(deliveries.c.id.in_(chosen_deferred), deliveries.c.state == "deferred",
                               deliveries.c.next_attempt_at <= now)
                        .values(**claimed)
                    ).rowcount
            else:
                # SQLite has one writer: from the first UPDATE on, nothing else changes the rows. The first ``limit``
                # due rows by id are the pending ones up to the last of them, then as many deferred ones as the
                # first UPDATE left room for. Each UPDATE reads its rows by id (no state test on the UPDATE itself:
                # with one, the planner may read every such row through the state index, ix_deliveries_state).
                both = sa.union_all(*(sa.select(part.subquery().c.id) for part in parts)).subquery()
                first = sa.select(both.c.id).order_by(both.c.id).limit(limit).subquery()
                last = sa.select(sa.func.max(first.c.id)).scalar_subquery()
                from_pending = connection.execute(
                    deliveries.update().where(deliveries.c.id.in_(pending_part.where(deliveries.c.id <= last)))
                    .values(**claimed)
                ).rowcount
                from_deferred = 0
                if from_pending < limit:
                    from_deferred = connection.execute(
                        deliveries.update()
                        .where(deliveries.c.id.in_(deferred_part.limit(limit - from_pending))).values(**claimed)
                    ).rowcount
            rows = connection.execute(  # the token is new: every row with it is one this transaction claimed
                sa.select(*_DELIVERY_COLUMNS).where(deliveries.c.claim_token == token).order_by(deliveries.c.id)
            ).all()
            self._claimed_editions.update(dict.fromkeys((row.id for row in rows), edition_id))
            changes = tallies.TallyChanges()
            changes.move(edition_id, "pending", "claimed", int(from_pending or 0))
            changes.move(edition_id, "deferred", "claimed", int(from_deferred or 0))
            changes.write(connection)
        names = _DELIVERY_NAMES  # not Row._asdict() per row: it works its keys out again for each (claims are hot)
        return [Delivery(**dict(zip(names, row, strict=True))) for row in rows]

    def renew(self, tokens: Collection[str], *, until: datetime) -> int:
        """Extend the lease of every row still claimed under these claim tokens; returns how many."""
        if not tokens:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(
                deliveries.update()
                .where(deliveries.c.claim_token.in_(list(tokens)), deliveries.c.state == "claimed")
                .values(lease_until=until)
            )
        return int(result.rowcount or 0)

    def release(self, claims: Mapping[int, str], *, now: datetime) -> int:
        """Give back claimed rows (id → claim token) that never reached DATA (a clean stop)."""
        if not claims:
            return 0
        with self.engine.begin() as connection:
            moved = connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(claims)), deliveries.c.state == "claimed",
                       deliveries.c.claim_token.in_(set(claims.values())), deliveries.c.phase != DATA_PHASE)
                .values(state="pending", claim_token=None, phase="", updated=now)
                .returning(deliveries.c.edition_id)
            ).scalars().all()
            changes = tallies.TallyChanges()
            changes.move_each(moved, "claimed", "pending")
            changes.write(connection)
        return len(moved)

    # --- recording ----------------------------------------------------------------------------------------

    def record(self, *, data_phase: Sequence[tuple[int, str]], outcomes: Sequence[Outcome],
               now: datetime) -> set[int]:
        """One transaction: mark rows (id, claim token) about to send DATA, and store finished outcomes.

        A ``sent`` outcome is also the record of the papers that reached the reader: those its variant
        carries (``variant_papers``), read by ``papers_carried`` when a later edition is filled.

        Returns the ids of ``data_phase`` rows that are no longer claimed under that token: another sender
        took them over after this one's lease lapsed, so this one must not send them. Outcomes for such rows
        are dropped the same way. Both statements are compiled once per dialect and run as one driver
        executemany each (``storage.bulk``): this runs for every few messages sent, and SQLAlchemy's
        per-call and per-row work cost more than SQLite's own.
        """
        with self.engine.begin() as connection:
            return self._record(connection, data_phase=data_phase, outcomes=outcomes, now=now)

    def record_in(self, connection: sa.Connection, *, data_phase: Sequence[tuple[int, str]],
                  outcomes: Sequence[Outcome], now: datetime) -> set[int]:
        """``record`` in the caller's transaction (``ledger_quick.QuickRecorder``'s, on a connection it holds)."""
        return self._record(connection, data_phase=data_phase, outcomes=outcomes, now=now)

    def _record(self, connection: sa.Connection, *, data_phase: Sequence[tuple[int, str]],
                outcomes: Sequence[Outcome], now: datetime) -> set[int]:
        lost: set[int] = set()
        dialect = connection.dialect
        if data_phase:
            marked = _MARK_DATA_BULK.for_dialect(dialect).run(
                connection, [{"row_id": i, "token": t} for i, t in data_phase], {"now": now})
            if not (dialect.supports_sane_multi_rowcount and marked == len(data_phase)):
                lost = self._not_marked(connection, data_phase)
        if outcomes:
            self._store_outcomes(connection, outcomes, now=now)
        return lost

    def _store_outcomes(self, connection: sa.Connection, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """Store the outcomes (fenced by their claim token) and move the tallies by the rows really stored.

        Run as one executemany per (edition, new state, halted or not), each one's row count being how many of
        its rows were still claimed under their token: usually one group per call.
        """
        statement = _STORE_OUTCOME_BULK.for_dialect(connection.dialect)
        known = self._claimed_editions
        editions = {o.delivery_id: known.pop(o.delivery_id) for o in outcomes if o.delivery_id in known}
        if unknown := [o.delivery_id for o in outcomes if o.delivery_id not in editions]:  # claimed elsewhere
            editions.update((int(i), int(e)) for i, e in connection.execute(  # an edition never changes: no lock
                sa.select(deliveries.c.id, deliveries.c.edition_id).where(deliveries.c.id.in_(unknown))))
        groups: dict[tuple[int, str, bool], list[dict[str, Any]]] = {}
        for o in outcomes:
            edition_id = editions.get(o.delivery_id)
            if edition_id is None:  # no such row: its outcome stores nothing
                continue
            halted = o.state == "pending" and o.phase == HALTED_PHASE
            groups.setdefault((int(edition_id), o.state, halted), []).append(
                {"row_id": o.delivery_id, "token": o.claim_token, "new_state": o.state, "new_phase": o.phase,
                 "attempt": 1 if o.count_attempt else 0, "next_at": o.next_attempt_at, "code": o.code,
                 "msg": o.message[:1000], "sent": now if o.state == "sent" else None})
        changes = tallies.TallyChanges()
        for (edition_id, state, halted), rows in groups.items():
            stored = _run_counted(statement, connection, rows, {"now": now})
            changes.move(edition_id, "claimed", state, stored)
            if halted:
                changes.add(edition_id, tallies.HALTS, stored)
        changes.write(connection)

    @staticmethod
    def _not_marked(connection: sa.Connection, data_phase: Sequence[tuple[int, str]]) -> set[int]:
        """Of rows just marked for DATA, those the update did not reach (claimed by another token)."""
        wanted = dict(data_phase)
        held = dict(connection.execute(
            sa.select(deliveries.c.id, deliveries.c.claim_token).where(
                deliveries.c.id.in_(list(wanted)), deliveries.c.state == "claimed", deliveries.c.phase == DATA_PHASE)
        ).all())
        return {i for i, token in wanted.items() if held.get(i) != token}

    # --- operator -----------------------------------------------------------------------------------------

    def requeue(self, edition_id: int, *, states: Collection[str], email: str | None = None,
                now: datetime) -> int:
        """Put finished rows (failed, ambiguous, deferred) back to pending for an operator's retry."""
        where = sa.and_(deliveries.c.edition_id == edition_id, deliveries.c.state.in_(list(states)))
        if email is not None:
            where = sa.and_(where, sa.func.lower(deliveries.c.email) == email.lower())
        moved = 0
        with self.engine.begin() as connection:
            changes = tallies.TallyChanges()
            for state in sorted(set(states)):  # one UPDATE per state: each one's row count moves its tally
                result = connection.execute(
                    deliveries.update().where(where, deliveries.c.state == state).values(
                        state="pending", phase="", claim_token=None, attempts=0, next_attempt_at=None, updated=now)
                )
                changes.move(edition_id, state, "pending", int(result.rowcount or 0))
                moved += int(result.rowcount or 0)
            changes.write(connection)
        return moved

    def prune(self, *, before: datetime) -> int:
        """Forget the delivery rows and rendered variants of editions built before ``before``."""
        old = sa.select(db.editions.c.id).where(db.editions.c.created < before)
        with self.engine.begin() as connection:
            removed = connection.execute(deliveries.delete().where(deliveries.c.edition_id.in_(old))).rowcount
            connection.execute(variants.delete().where(variants.c.edition_id.in_(old)))
            connection.execute(variant_papers.delete().where(variant_papers.c.edition_id.in_(old)))
            tallies.forget(connection, old)
        return int(removed or 0)


def _run_counted(statement: BulkStatement, connection: sa.Connection, rows: Sequence[Mapping[str, Any]],
                 shared: Mapping[str, Any]) -> int:
    """Run ``statement`` for every row; returns how many rows it changed in all (one by one where the driver
    cannot sum an executemany's row counts)."""
    if connection.dialect.supports_sane_multi_rowcount:
        return statement.run(connection, rows, shared)
    return sum(statement.run(connection, [row], shared) for row in rows)
