"""What the scheduler did and who may run it: the `runs` log and the `serve` lease.

Every scheduled run leaves a record in words ("no new papers since …", "sent 120, deferred 2"), so
"the job succeeded but no email came" always has an answer in `newsletter status`. The lease makes a
second `serve` on the same database wait instead of running the same jobs: whoever holds an unexpired
lease runs jobs; a holder renews it while alive, so a crashed one is replaced after the lease lapses.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.storage import db


@dataclass(frozen=True)
class RunRecord:
    id: int
    job: str
    started: datetime
    finished: datetime | None
    status: str
    summary: str
    details: Mapping[str, Any]
    worker: str


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self, job: str, *, now: datetime, worker: str) -> int:
        with self.engine.begin() as connection:
            result = connection.execute(
                db.runs.insert().values(job=job, started=now, status="running", summary="", details={},
                                        worker=worker)
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish(self, run_id: int, *, now: datetime, status: str, summary: str,
               details: Mapping[str, Any] | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                db.runs.update().where(db.runs.c.id == run_id)
                .values(finished=now, status=status, summary=summary, details=dict(details or {}))
            )

    def running_workers(self) -> set[str]:
        """The processes (host:pid) with runs still marked running."""
        with self.engine.connect() as connection:
            return {str(w) for w in connection.execute(
                sa.select(db.runs.c.worker).distinct().where(db.runs.c.status == "running")).scalars()}

    def mark_died(self, workers: Collection[str], *, now: datetime) -> int:
        """Runs of these dead processes end as ``died`` instead of staying "running" forever."""
        if not workers:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(
                db.runs.update().where(db.runs.c.status == "running", db.runs.c.worker.in_(list(workers)))
                .values(status="died", finished=now,
                        summary="the process running it stopped (killed or crashed) before the run finished")
            )
        return int(result.rowcount or 0)

    def died_since(self, jobs: Collection[str], *, since: datetime) -> list[RunRecord]:
        """Runs of these jobs started since ``since`` whose process died before they finished (``mark_died``)."""
        with self.engine.connect() as connection:
            return [RunRecord(**row) for row in connection.execute(
                sa.select(db.runs).where(db.runs.c.job.in_(list(jobs)), db.runs.c.status == "died",
                                         db.runs.c.started >= since).order_by(db.runs.c.started)
            ).mappings()]

    def record(self, job: str, *, now: datetime, worker: str, status: str, summary: str,
               details: Mapping[str, Any] | None = None) -> int:
        """A run that did nothing itself (e.g. skipped because it was missed by too much)."""
        run_id = self.start(job, now=now, worker=worker)
        self.finish(run_id, now=now, status=status, summary=summary, details=details)
        return run_id

    def recent(self, *, limit: int = 20, job: str | None = None) -> list[RunRecord]:
        query = sa.select(db.runs).order_by(db.runs.c.started.desc(), db.runs.c.id.desc()).limit(limit)
        if job is not None:
            query = query.where(db.runs.c.job == job)
        with self.engine.connect() as connection:
            return [RunRecord(**row) for row in connection.execute(query).mappings()]

    def prune(self, *, before: datetime) -> int:
        with self.engine.begin() as connection:
            return int(connection.execute(db.runs.delete().where(db.runs.c.started < before)).rowcount or 0)


class Lease:
    """A named, expiring lock row: portable (an UPDATE with a condition, or an INSERT that may collide)."""

    def __init__(self, engine: Engine, name: str, *, holder: str, duration: timedelta) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.duration = duration

    def acquire(self, *, now: datetime) -> bool:
        """Take or renew the lease; False while another live holder has it."""
        table = db.leases
        with self.engine.begin() as connection:
            taken = connection.execute(
                table.update()
                .where(table.c.name == self.name, sa.or_(table.c.holder == self.holder, table.c.expires < now))
                .values(holder=self.holder, expires=now + self.duration,
                        since=sa.case((table.c.holder == self.holder, sa.func.coalesce(table.c.since, now)),
                                      else_=now))
            ).rowcount
        if taken:
            return True
        try:
            with self.engine.begin() as connection:
                connection.execute(table.insert().values(name=self.name, holder=self.holder,
                                                         expires=now + self.duration, since=now))
        except IntegrityError:
            return False  # someone else holds it
        return True

    def release(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                db.leases.delete().where(db.leases.c.name == self.name, db.leases.c.holder == self.holder)
            )

    def held(self, *, now: datetime) -> tuple[str, datetime | None] | None:
        """(holder, held since) while a live holder has the lease; None when nobody does."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(db.leases.c.holder, db.leases.c.expires, db.leases.c.since)
                .where(db.leases.c.name == self.name)
            ).first()
        return (row[0], row[2]) if row and row[1] >= now else None

    def row(self) -> tuple[str, datetime, datetime | None] | None:
        """(holder, expires, since) as stored, live or lapsed; None when nobody ever took it or it was released."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(db.leases.c.holder, db.leases.c.expires, db.leases.c.since)
                .where(db.leases.c.name == self.name)
            ).first()
        return (str(row[0]), row[1], row[2]) if row else None

    def take_over(self, dead_holder: str, *, now: datetime) -> bool:
        """Take the lease from a holder known to be dead (same host, its pid gone), whatever its expiry says:
        a lease written under a clock far ahead would otherwise keep every `serve` waiting that long."""
        table = db.leases
        with self.engine.begin() as connection:
            taken = connection.execute(
                table.update().where(table.c.name == self.name, table.c.holder == dead_holder)
                .values(holder=self.holder, expires=now + self.duration, since=now)
            ).rowcount
        return bool(taken)

    def holder_now(self, *, now: datetime) -> str | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(db.leases.c.holder, db.leases.c.expires).where(db.leases.c.name == self.name)
            ).first()
        return row[0] if row and row[1] >= now else None


def database_now(engine: Engine, fallback: datetime) -> datetime:
    """The database server's clock where it has one (PostgreSQL), else ``fallback`` (SQLite: one host, one
    clock). Lease times written and compared on one clock stay right when a client's clock is stepped."""
    if engine.dialect.name != "postgresql":
        return fallback
    with engine.connect() as connection:
        now = connection.execute(sa.select(sa.func.now())).scalar_one()
    return now if now.tzinfo is not None else now.replace(tzinfo=fallback.tzinfo)
