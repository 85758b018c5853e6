"""Cron lines of ``[schedule]`` → APScheduler triggers, in the newsletter's time zone, and the next fire times.

Light on purpose: `status` reads the schedule without importing the jobs (and so the whole pipeline).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from newsletter.config import Settings

LEASE_NAME = "scheduler"
"""The database lease that lets one `serve` per database run the jobs."""


def cron_trigger(value: str, timezone: str) -> Any:
    """An APScheduler CronTrigger from 5 crontab fields, or 6 with a leading seconds field."""
    from apscheduler.triggers.cron import CronTrigger

    fields = value.split()
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                       timezone=timezone)


def schedules(settings: Settings) -> dict[str, str]:
    """Job name → cron line, for the jobs that are enabled."""
    s = settings.schedule
    lines = {"fetch": s.fetch, "daily": s.daily, "weekly": s.weekly, "retry": s.retry,
             "housekeeping": s.housekeeping}
    return {name: line for name, line in lines.items() if line.strip()}


def next_runs(settings: Settings, *, now: datetime) -> dict[str, datetime | None]:
    zone = settings.newsletter.timezone
    return {name: cron_trigger(line, zone).get_next_fire_time(None, now) for name, line in schedules(settings).items()}
