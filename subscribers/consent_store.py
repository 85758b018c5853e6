"""Consent records carried by an export and restored by import, so `export` → `import` loses nothing.

A row of ``subscribers export`` carries the reader's status, how and when consent was given (``source``,
``consent_at``/``consent_ip``, ``confirmed_at``/``confirmed_ip``), when they left (``unsubscribed_at``),
their suppression entry (``suppression``, ``suppressed_at``) and what came back by mail about them with its
evidence (``evidence``: JSON). Importing such a row restores these exactly into a database that does not know
the address, and into one that does it never turns a reader active who is not (unsubscribed, bounced,
complained or pending) unless ``force``: the row is reported as kept instead. A reader the file says left
(unsubscribed, bounced, complained) is marked so, with the suppression entry. This module parses those
cells; ``subscribers.import_plan`` decides what a row does and ``subscribers.bulk_store`` writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from subscribers.models import STATUSES, Status, SuppressionReason
from subscribers.schema import SOURCES, SUPPRESSION_REASONS

LEFT: frozenset[str] = frozenset({"unsubscribed", "bounced", "complained"})
"""Statuses of readers who must get no email: each has a suppression entry."""
CARRIED_COLUMNS = ("status", "source", "consent_at", "consent_ip", "confirmed_at", "confirmed_ip",
                   "unsubscribed_at", "created", "suppression", "suppressed_at", "evidence")
EVENT_FIELDS = ("kind", "action", "status", "diagnostic", "message_id", "attributed_by", "created")


@dataclass(frozen=True, kw_only=True)
class Carried:
    """What an export row says about consent, checked (``parse_carried``)."""

    status: Status
    source: str = "import"
    consent_at: datetime | None = None
    consent_ip: str | None = None
    confirmed_at: datetime | None = None
    confirmed_ip: str | None = None
    unsubscribed_at: datetime | None = None
    created: datetime | None = None
    suppression: SuppressionReason | None = None
    suppressed_at: datetime | None = None
    evidence: tuple[dict[str, Any], ...] = field(default=())


def _when(value: str, column: str, problems: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{column}: not a date and time: {value!r}")
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_carried(values: dict[str, str], problems: list[str]) -> Carried | None:
    """The consent record of a row with a ``status`` cell (an export); None for a plain import row."""
    status = values.get("status", "").lower()
    if not status:
        return None
    if status not in STATUSES:
        problems.append(f"unknown status {values['status']!r}; expected one of: {', '.join(STATUSES)}")
        return None
    source = values.get("source", "").lower() or "import"
    if source not in SOURCES:
        problems.append(f"unknown source {values['source']!r}; expected one of: {', '.join(SOURCES)}")
    suppression = values.get("suppression", "").lower() or None
    if suppression is not None and suppression not in SUPPRESSION_REASONS:
        problems.append(f"unknown suppression {values['suppression']!r}; expected one of: "
                        f"{', '.join(SUPPRESSION_REASONS)}")
    evidence: list[dict[str, Any]] = []
    if values.get("evidence"):
        try:
            loaded = json.loads(values["evidence"])
            if not isinstance(loaded, list) or not all(isinstance(e, dict) for e in loaded):
                raise ValueError("not a list of events")
            evidence = [{k: e.get(k) for k in EVENT_FIELDS} for e in loaded]
            for event in evidence:
                event["created"] = _when(str(event["created"] or ""), "evidence created", problems)
                if event["created"] is None or not event["kind"] or not event["action"]:
                    raise ValueError("an event lacks its kind, action or time")
        except ValueError as error:
            problems.append(f"evidence: not the JSON an export writes ({error})")
    return Carried(
        status=status, source=source,
        consent_at=_when(values.get("consent_at", ""), "consent_at", problems),
        consent_ip=values.get("consent_ip") or None,
        confirmed_at=_when(values.get("confirmed_at", ""), "confirmed_at", problems),
        confirmed_ip=values.get("confirmed_ip") or None,
        unsubscribed_at=_when(values.get("unsubscribed_at", ""), "unsubscribed_at", problems),
        created=_when(values.get("created", ""), "created", problems),
        suppression=cast(SuppressionReason | None, suppression),
        suppressed_at=_when(values.get("suppressed_at", ""), "suppressed_at", problems),
        evidence=tuple(evidence),
    )
