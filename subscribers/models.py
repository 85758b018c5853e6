"""The subscriber record passed around: a frozen dataclass, never a database row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Status = Literal["pending", "active", "unsubscribed", "bounced", "complained"]
Frequency = Literal["daily", "weekly"]
Source = Literal["import", "web", "cli"]


@dataclass(frozen=True, kw_only=True)
class Subscriber:
    """One reader: a normalised (lower-case) address, their topics in the order they chose them, and how often."""

    id: int
    email: str
    name: str = ""
    status: Status = "active"
    topics: tuple[str, ...] = ()
    frequency: Frequency = "daily"
    source: Source = "cli"
    consent_at: datetime | None = None
    consent_ip: str | None = None
    created: datetime
    updated: datetime
