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

import sqlite3
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

from newsletter.storage import db
from newsletter.storage.bulk import BulkStatements
from newsletter.storage.ledger_reads import HALTED_PHASE as HALTED_PHASE
from newsletter.storage.ledger_reads import STATES as STATES
from newsletter.storage.ledger_reads import LedgerReads, due_rows
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
_HELD_FOR_DATA_BULK = BulkStatements(sa.select(deliveries.c.claim_token).where(
    deliveries.c.id == sa.bindparam("row_id"), deliveries.c.state == "claimed", deliveries.c.phase == DATA_PHASE))


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


class Ledger(LedgerReads):
    def __init__(self, engine: Engine, *, worker: str = "") -> None:
        self.engine = engine
        self.worker = worker

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
            return db.insert_new(connection, deliveries, values)
        with self.engine.begin() as own:
            return db.insert_new(own, deliveries, values)

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
                connection.execute(
                    deliveries.update()
                    .where(inactive, deliveries.c.id.in_(found))
                    .values(state="suppressed", claim_token=None, updated=now, last_message="subscriber is not active")
                )
        return found

    def claim(self, edition_id: int, *, limit: int, now: datetime, lease: timedelta,
              only: Collection[int] | None = None) -> list[Delivery]:
        """Atomically take up to ``limit`` due rows for this process (of ``only`` these rows, when given).

        On PostgreSQL the candidates are locked with FOR UPDATE SKIP LOCKED: concurrent claimers never wait
        for each other and never take the same row.
        """
        token = uuid.uuid4().hex
        due = due_rows(now)
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
        with self.engine.begin() as connection:
            chosen: Any
            if self.engine.dialect.name == "postgresql":
                # Lock the candidates first, in statements of their own: a LIMIT … SKIP LOCKED subquery inside
                # the UPDATE may be run more than once by PostgreSQL and then claim more than ``limit`` rows (and
                # FOR UPDATE is not allowed on a UNION). Rows locked here but not chosen are free at commit.
                locked = {i for part in parts
                          for i in connection.execute(part.with_for_update(skip_locked=True)).scalars()}
                chosen = sorted(locked)[:limit]
                if not chosen:
                    return []
                still_due = due  # locked, but re-checked: another claim may have taken them before the lock
            else:
                both = sa.union_all(*(sa.select(part.subquery().c.id) for part in parts)).subquery()
                chosen = sa.select(both.c.id).order_by(both.c.id).limit(limit).scalar_subquery()
                # One statement, and SQLite has one writer: the rows chosen are still due when updated. Without the
                # redundant test the planner looks the ids up by primary key; with it, it may read every pending
                # row through the state index (ix_deliveries_state) on every batch.
                still_due = sa.true()
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(chosen), still_due)
                .values(state="claimed", claim_token=token, lease_until=now + lease, phase="", worker=self.worker,
                        updated=now)
            )
            rows = connection.execute(  # the token is new: every row with it is one this transaction claimed
                sa.select(*_DELIVERY_COLUMNS).where(deliveries.c.claim_token == token).order_by(deliveries.c.id)
            ).all()
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
            result = connection.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(claims)), deliveries.c.state == "claimed",
                       deliveries.c.claim_token.in_(set(claims.values())), deliveries.c.phase != DATA_PHASE)
                .values(state="pending", claim_token=None, phase="", updated=now)
            )
        return int(result.rowcount or 0)

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

    def try_record(self, *, data_phase: Sequence[tuple[int, str]], outcomes: Sequence[Outcome],
                   now: datetime) -> set[int] | None:
        """``record`` without waiting: None, with nothing written, when it cannot commit at once (then call
        ``record`` where waiting blocks nothing). On SQLite that is when another process holds the write
        lock; any other database is reached over a connection that can always wait, so it is always None.
        One commit; the ledger writer keeps a ``quick_recorder`` for the whole run instead.
        """
        recorder = self.quick_recorder()
        if recorder is None:
            return None
        try:
            return recorder.try_record(data_phase=data_phase, outcomes=outcomes, now=now)
        finally:
            recorder.close()

    def quick_recorder(self) -> QuickRecorder | None:
        """SQLite: a ``QuickRecorder`` on a connection of its own (close it); None on any other database."""
        return QuickRecorder(self.engine) if self.engine.dialect.name == "sqlite" else None

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
            _STORE_OUTCOME_BULK.for_dialect(dialect).run(connection, _outcome_rows(outcomes, now), {"now": now})
        return lost

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
        with self.engine.begin() as connection:
            result = connection.execute(
                deliveries.update().where(where).values(
                    state="pending", phase="", claim_token=None, attempts=0, next_attempt_at=None, updated=now)
            )
        return int(result.rowcount or 0)

    def prune(self, *, before: datetime) -> int:
        """Forget the delivery rows and rendered variants of editions built before ``before``."""
        old = sa.select(db.editions.c.id).where(db.editions.c.created < before)
        with self.engine.begin() as connection:
            removed = connection.execute(deliveries.delete().where(deliveries.c.edition_id.in_(old))).rowcount
            connection.execute(variants.delete().where(variants.c.edition_id.in_(old)))
            connection.execute(variant_papers.delete().where(variant_papers.c.edition_id.in_(old)))
        return int(removed or 0)


class QuickRecorder:
    """``Ledger.record`` for commits that must never wait (SQLite): the ledger writer's, on the event loop.

    A local SQLite commit of a few rows takes well under a millisecond, less than handing it to a thread, so
    the writer tries each one on the loop, and only one that finds another process holding the write lock
    goes to its thread (``Ledger.record``, which waits). This holds one DBAPI connection from the engine's pool
    for the run, with SQLite's busy_timeout 0 (set once, restored by ``close``), and runs the same compiled
    statements (``storage.bulk``) on it: through SQLAlchemy each commit also paid a pool checkout and return,
    two PRAGMAs and the execution machinery of both statements, more CPU than SQLite's own work on the rows.
    Errors are raised as SQLAlchemy's (``DBAPIError.instance``), like every other ledger write.
    """

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect
        self._pooled = engine.raw_connection()
        driver = self._pooled.driver_connection
        if not isinstance(driver, sqlite3.Connection):  # pragma: no cover - Ledger.quick_recorder checks
            self._pooled.close()
            raise TypeError("QuickRecorder needs a SQLite connection")
        self._driver = driver
        driver.execute("PRAGMA busy_timeout=0")

    def try_record(self, *, data_phase: Sequence[tuple[int, str]], outcomes: Sequence[Outcome],
                   now: datetime) -> set[int] | None:
        """``Ledger.record`` in one transaction; None, with nothing written, if another process holds the lock."""
        driver = self._driver
        sql = ""
        try:
            lost: set[int] = set()
            if data_phase:
                mark = _MARK_DATA_BULK.for_dialect(self._dialect)
                sql = mark.sql
                rows = mark.parameters([{"row_id": i, "token": t} for i, t in data_phase], {"now": now})
                if driver.executemany(sql, rows).rowcount != len(data_phase):
                    sql = _HELD_FOR_DATA_BULK.for_dialect(self._dialect).sql
                    lost = _unmarked(driver, self._dialect, data_phase)
            if outcomes:
                store = _STORE_OUTCOME_BULK.for_dialect(self._dialect)
                sql = store.sql
                driver.executemany(sql, store.parameters(_outcome_rows(outcomes, now), {"now": now}))
            sql = "COMMIT"
            driver.commit()
            return lost
        except sqlite3.Error as error:
            driver.rollback()
            if db.is_sqlite_busy_error(error):
                return None
            raise sa.exc.DBAPIError.instance(sql, None, error, sqlite3.Error) from error

    def close(self) -> None:
        """Give the connection back to the pool, waiting for locks again like every other (or drop it)."""
        try:
            self._driver.execute(f"PRAGMA busy_timeout={db.SQLITE_BUSY_TIMEOUT_MS}")
        except sqlite3.Error:
            self._pooled.invalidate()  # never back in the pool as a connection that does not wait
            return
        self._pooled.close()


def _unmarked(driver: sqlite3.Connection, dialect: Dialect, data_phase: Sequence[tuple[int, str]]) -> set[int]:
    """``Ledger._not_marked`` on a DBAPI connection, in its transaction: rows just marked for DATA that another
    claim token holds (this process's claim was taken over). Rare: one primary-key read per row."""
    held = _HELD_FOR_DATA_BULK.for_dialect(dialect)
    lost = set()
    for row_id, token in data_phase:
        found = driver.execute(held.sql, held.parameters([{"row_id": row_id}], {})[0]).fetchone()
        if found is None or found[0] != token:
            lost.add(row_id)
    return lost


def _outcome_rows(outcomes: Sequence[Outcome], now: datetime) -> list[dict[str, Any]]:
    return [
        {"row_id": o.delivery_id, "token": o.claim_token, "new_state": o.state, "new_phase": o.phase,
         "attempt": 1 if o.count_attempt else 0, "next_at": o.next_attempt_at, "code": o.code,
         "msg": o.message[:1000], "sent": now if o.state == "sent" else None}
        for o in outcomes
    ]
