"""The webhook events of editions: ``edition.built`` when one is stored, ``edition.sent`` when its ledger is done.

Both are named by the edition (``msg_edition_built_<id>``, ``msg_edition_sent_<id>``), so each happens once
per edition however many processes or retry runs get there. ``edition.sent`` means every reader's row
reached a final state (sent, failed, ambiguous, suppressed): no row is pending, claimed or deferred.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from newsletter.records.editions import Edition
from newsletter.storage import webhook_outbox
from newsletter.storage.ledger import Ledger

OPEN_STATES = ("pending", "claimed", "deferred")


def edition_data(edition: Edition) -> dict[str, Any]:
    return {"id": edition.id, "slug": edition.slug, "frequency": edition.frequency,
            "date": edition.date.isoformat(), "papers": edition.paper_count, "empty_reason": edition.empty_reason}


def edition_built(connection: Connection, edition: Edition, *, now: datetime) -> None:
    """In the transaction that stores the edition."""
    webhook_outbox.record(connection, "edition.built", subject=f"edition:{edition.id}", data=edition_data(edition),
                          now=now, event_id=f"msg_edition_built_{edition.id}")


def edition_sent_if_done(engine: Engine, edition: Edition, *, now: datetime) -> bool:
    """Record ``edition.sent`` when the edition's ledger has rows and none is open; whether it was recorded now."""
    if edition.is_empty:
        return False
    with engine.connect() as connection:
        if not webhook_outbox.wanted(connection, "edition.sent"):
            return False
    counts = Ledger(engine).counts(edition.id)
    if not sum(counts.values()) or any(counts[state] for state in OPEN_STATES):
        return False
    data = {**edition_data(edition), "deliveries": counts}
    return webhook_outbox.WebhookOutbox(engine).record(
        "edition.sent", subject=f"edition:{edition.id}", data=data, now=now,
        event_id=f"msg_edition_sent_{edition.id}") is not None
