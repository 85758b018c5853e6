"""Cron lines of ``[schedule]`` → APScheduler triggers, in the newsletter's time zone."""

from __future__ import annotations

from typing import Any


def cron_trigger(value: str, timezone: str) -> Any:
    """An APScheduler CronTrigger from 5 crontab fields, or 6 with a leading seconds field."""
    from apscheduler.triggers.cron import CronTrigger

    fields = value.split()
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                       timezone=timezone)
