"""The subscriber records passed around: frozen dataclasses, never database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Status = Literal["pending", "active", "unsubscribed", "bounced", "complained"]
Frequency = Literal["daily", "weekly"]
FREQUENCIES: tuple[Frequency, ...] = ("daily", "weekly")
STATUSES: tuple[Status, ...] = ("pending", "active", "unsubscribed", "bounced", "complained")
Source = Literal["import", "web", "cli", "api"]
SuppressionReason = Literal["unsubscribed", "bounced", "complained", "deleted", "operator"]


@dataclass(frozen=True, kw_only=True)
class Subscriber:
    """One reader: a normalised (lower-case) address, their topics in the order they chose them, and how often.

    ``consent_at``/``consent_ip``: when and from where the subscription was asked for (the web form, or the
    time of an import or CLI add, whose consent the operator vouches for). ``confirmed_at``/``confirmed_ip``:
    when and from where the double opt-in link was confirmed.
    """

    id: int
    email: str
    name: str = ""
    status: Status = "active"
    topics: tuple[str, ...] = ()
    frequency: Frequency = "daily"
    source: Source = "cli"
    consent_at: datetime | None = None
    consent_ip: str | None = None
    confirmed_at: datetime | None = None
    confirmed_ip: str | None = None
    unsubscribed_at: datetime | None = None
    created: datetime
    updated: datetime


@dataclass(frozen=True, kw_only=True)
class Suppression:
    address_hash: str
    reason: SuppressionReason
    created: datetime


SubscribeOutcome = Literal["pending", "already-active", "unsubscribed", "suppressed"]


@dataclass(frozen=True, kw_only=True)
class SubscribeResult:
    """What a web subscribe request did. ``send_confirmation`` says whether a confirmation email is due
    (before the per-address rate limit is applied)."""

    outcome: SubscribeOutcome
    subscriber: Subscriber | None

    @property
    def send_confirmation(self) -> bool:
        return self.outcome == "pending"


@dataclass(frozen=True, kw_only=True)
class RowError:
    """One CSV row that was not imported: its line number in the file and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class ImportReport:
    rows: int = 0
    added: list[Subscriber] = field(default_factory=list)
    updated: list[Subscriber] = field(default_factory=list)
    unchanged: list[Subscriber] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    kept: list[Subscriber] = field(default_factory=list)
    """Imported rows left not active: their recorded status (unsubscribed, bounced, complained, pending) kept."""
    dry_run: bool = False
    encoding: str = "text"
    """How the file was decoded (``utf-8``, ``utf-8 with BOM``, ``cp1252``, ``latin-1``, or ``text``: given decoded)."""
    delimiter: str = ","

    @property
    def to_confirm(self) -> list[Subscriber]:
        """Imported rows left pending (``--confirm``): each needs a confirmation email."""
        return [s for s in (*self.added, *self.updated) if s.status == "pending"]
