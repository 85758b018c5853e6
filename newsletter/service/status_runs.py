"""What `status` says about the scheduler: who runs it, and the recent runs without their repetitions.

A `serve` that retries deferred deliveries every few minutes fills the run log with "no deferred
deliveries are due"; ten of those hide the one fetch that failed. Consecutive runs of the same job with
the same status and summary are shown once, with how many there were and the span they cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.delivery.claims import dead_senders
from newsletter.storage.editions import EditionStore
from newsletter.storage.reviews import ReviewStore
from newsletter.storage.runs import Lease, RunRecord, database_now


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


FUTURE_MARGIN = timedelta(minutes=1)
"""A lease expiring later than a renewal made now would, by more than this, was written by a clock ahead."""


def lease_view(engine: Engine, name: str, *, now: datetime, duration: timedelta | None = None) -> dict[str, Any]:
    """Whether a `serve` holds the scheduler lease: holder (``host:pid``), host, pid and since when.

    Times are compared on the database server's clock where it has one. A holder on this host whose process
    is gone is not running, whatever its lease says (``stale_holder``); a lease whose expiry lies further
    ahead than ``duration`` allows is reported (``lease_ahead_seconds``): a clock ahead of this one wrote it.
    """
    now = database_now(engine, now)
    stored = Lease(engine, name, holder="", duration=timedelta(0)).row()
    view: dict[str, Any] = {"lease_holder": None, "running": False, "host": None, "pid": None, "since": None,
                            "stale_holder": None, "lease_ahead_seconds": None}
    if stored is None or stored[1] < now:
        return view
    holder, expires, since = stored
    if duration is not None and expires - now - duration > FUTURE_MARGIN:
        view["lease_ahead_seconds"] = int((expires - now - duration).total_seconds())
    if dead_senders([holder]):
        view["stale_holder"] = holder
        return view
    host, _, pid = holder.rpartition(":")
    view.update({"lease_holder": holder, "running": True, "host": host or holder,
                 "pid": int(pid) if pid.isdigit() else None, "since": _iso(since)})
    return view


def awaiting_approval(settings: Settings, engine: Engine, *, limit: int = 10) -> list[str]:
    """Slugs of recent non-empty editions waiting for `newsletter edition approve` (``[schedule] approve``)."""
    if not settings.schedule.approve:
        return []
    recent = [e for e in EditionStore(engine).editions(limit=limit) if not e.is_empty]
    waiting = set(ReviewStore(engine).awaiting([e.id for e in recent]))
    return [e.slug for e in recent if e.id in waiting]


def collapsed_runs(runs: Sequence[RunRecord], *, limit: int = 10) -> list[dict[str, Any]]:
    """Newest first; a run repeating the one after it (same job, status, summary) folds into it."""
    shown: list[dict[str, Any]] = []
    for run in runs:
        last = shown[-1] if shown else None
        if last is not None and (last["job"], last["status"], last["summary"]) == (run.job, run.status, run.summary):
            last["repeated"] += 1
            last["first_started"] = _iso(run.started)
            continue
        if len(shown) == limit:
            break
        shown.append({"job": run.job, "started": _iso(run.started), "finished": _iso(run.finished),
                      "status": run.status, "summary": run.summary, "repeated": 1,
                      "first_started": _iso(run.started)})
    return shown
