"""What importing one checked CSV row does, decided without the database: the rules of an import, pure.

A bulk import looks up the stored rows and suppression entries of a whole chunk at once
(``subscribers.bulk_store``), then asks ``plan_put`` (a plain row: the rules of ``SubscriberStore.put``) or
``plan_restore`` (an export row: status, consent and evidence carried, see ``subscribers.consent_store``) what
each row does, and writes the chunk's plans with a few statements. Keeping the decision apart from the writes is
what lets one transaction per chunk replace several round trips per row.

A plan never raises for a suppressed address: it carries the ``SuppressedError`` the row is reported with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from subscribers.consent_store import LEFT, Carried
from subscribers.errors import SuppressedError
from subscribers.models import Frequency, Source, Status, Subscriber, Suppression, SuppressionReason
from subscribers.schema import SOURCES, SUPPRESSION_REASONS

Outcome = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True, kw_only=True)
class Wanted:
    """One checked row: the normal-form address and the values it gives (None: leave the stored one)."""

    line: int
    email: str
    name: str | None
    topics: tuple[str, ...] | None
    frequency: Frequency | None
    carried: Carried | None = None


@dataclass(kw_only=True)
class Plan:
    """What one row does: the outcome, the row to insert or the columns to change, and the suppression entry.

    ``suppression``: ``None`` leaves the entry as it is, ``"lift"`` deletes it, a (reason, time) pair sets it.
    """

    row: Wanted
    outcome: Outcome = "unchanged"
    existing: Subscriber | None = None
    insert: dict[str, Any] | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    suppression: tuple[SuppressionReason, datetime] | Literal["lift"] | None = None
    events: tuple[dict[str, Any], ...] = ()
    refused: SuppressedError | None = None

    def result(self, inserted: Subscriber | None = None) -> Subscriber:
        """The subscriber as stored after the plan ran (``inserted``: the row the insert returned)."""
        if inserted is not None:
            return inserted
        if self.existing is None:  # pragma: no cover - an insert plan always gets its stored row
            raise ValueError("no stored subscriber for this plan")
        if not self.changes:
            return self.existing
        values: dict[str, Any] = {k: (_utc(v) if isinstance(v, datetime) else v) for k, v in self.changes.items()}
        if "topics" in values:
            values["topics"] = tuple(values["topics"])
        return replace(self.existing, **values)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _reason(status: str) -> SuppressionReason:
    return cast(SuppressionReason, status if status in SUPPRESSION_REASONS else "operator")


def _common_changes(existing: Subscriber, row: Wanted) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if row.name is not None and row.name != existing.name:
        changes["name"] = row.name
    if row.topics and tuple(row.topics) != existing.topics:
        changes["topics"] = list(row.topics)
    if row.frequency is not None and row.frequency != existing.frequency:
        changes["frequency"] = row.frequency
    return changes


def _new_row(row: Wanted, default_topics: tuple[str, ...], now: datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "email": row.email, "name": row.name or "", "topics": list(row.topics or default_topics),
        "frequency": row.frequency or "daily", "consent_at": now, "consent_ip": None, "confirmed_at": None,
        "confirmed_ip": None, "unsubscribed_at": None, "created": now, "updated": now,
    }
    base.update(values)
    return base


def plan_put(row: Wanted, existing: Subscriber | None, entry: Suppression | None, *, now: datetime,
             default_topics: tuple[str, ...], pending: bool, source: Source, force: bool) -> Plan:
    """A plain row (no ``status`` cell): the rules of ``SubscriberStore.put``, in the same order."""
    plan = Plan(row=row, existing=existing)
    if entry is not None:
        if not force:
            plan.refused = SuppressedError(row.email, entry.reason)
            return plan
        plan.suppression = "lift"
    if existing is None:
        status: Status = "pending" if pending else "active"
        plan.outcome = "added"
        plan.insert = _new_row(row, default_topics, now, status=status, source=source)
        return plan
    if existing.status in LEFT and not force:
        plan.refused = SuppressedError(row.email, existing.status)
        return plan
    changes = _common_changes(existing, row)
    wanted: Status = "active" if existing.status == "active" or not pending else "pending"
    if existing.status == "pending" and not force:
        wanted = "pending"  # a sign-up never confirmed: its consent is unproven, it stays pending
    if wanted != existing.status:
        changes.update(status=wanted, consent_at=now, consent_ip=None, source=source, unsubscribed_at=None)
    if changes:
        plan.outcome, plan.changes = "updated", {**changes, "updated": now}
    return plan


def plan_restore(row: Wanted, carried: Carried, existing: Subscriber | None, entry: Suppression | None, *,
                 now: datetime, default_topics: tuple[str, ...], force: bool) -> Plan:
    """An export row: restore its status, consent record, suppression and evidence (``subscribers.consent_store``
    says what is kept when the address is already stored)."""
    plan = Plan(row=row, existing=existing)
    if existing is None:
        if entry is not None and not force and (entry.reason == "deleted" or carried.status not in LEFT):
            plan.refused = SuppressedError(row.email, entry.reason)
            return plan
        if entry is not None and force and carried.status not in LEFT:
            plan.suppression, entry = "lift", None
        plan.outcome = "added"
        plan.insert = _new_row(
            row, default_topics, now, status=carried.status,
            source=carried.source if carried.source in SOURCES else "import",
            consent_at=carried.consent_at or now, consent_ip=carried.consent_ip,
            confirmed_at=carried.confirmed_at, confirmed_ip=carried.confirmed_ip,
            unsubscribed_at=carried.unsubscribed_at, created=carried.created or now)
        if (carried.status in LEFT or carried.suppression is not None) and entry is None:
            plan.suppression = (carried.suppression or _reason(carried.status),
                                carried.suppressed_at or carried.unsubscribed_at or now)
        plan.events = carried.evidence
        return plan
    changes = _common_changes(existing, row)
    if carried.status != existing.status:
        if carried.status in LEFT:  # the file says they left: never email them again
            changes.update(status=carried.status, unsubscribed_at=carried.unsubscribed_at or now)
            plan.suppression = (carried.suppression or _reason(carried.status), carried.suppressed_at or now)
        elif existing.status in LEFT:
            if not force:
                plan.refused = SuppressedError(row.email, existing.status)
                return plan
            plan.suppression = "lift"
            changes.update(status=carried.status, unsubscribed_at=None)
        elif existing.status == "pending" and force:
            changes.update(status=carried.status)
        # else kept: a sign-up never confirmed stays pending (its consent is not in the file either), and an
        # active reader is never moved back to pending
    if changes:
        plan.outcome, plan.changes = "updated", {**changes, "updated": now}
    return plan
