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
from newsletter.storage.editions import EditionStore
from newsletter.storage.reviews import ReviewStore
from newsletter.storage.runs import Lease, RunRecord


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def lease_view(engine: Engine, name: str, *, now: datetime) -> dict[str, Any]:
    """Whether a `serve` holds the scheduler lease: holder (``host:pid``), host, pid and since when."""
    held = Lease(engine, name, holder="", duration=timedelta(0)).held(now=now)
    if held is None:
        return {"lease_holder": None, "running": False, "host": None, "pid": None, "since": None}
    holder, since = held
    host, _, pid = holder.rpartition(":")
    return {"lease_holder": holder, "running": True, "host": host or holder,
            "pid": int(pid) if pid.isdigit() else None, "since": _iso(since)}


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
