"""Which changes are webhook events, and ``attach``, which turns them on for an engine.

Subscribers: every status a subscriber row moves to is an event, written in the change's transaction
(``subscribers.changes`` tells of the change): a new row is ``subscriber.created`` (pending or active),
pending → active ``subscriber.confirmed``, left → active ``subscriber.resubscribed``, and a move to
unsubscribed, bounced or complained is ``subscriber.unsubscribed|bounced|complained``.

Editions: ``edition.built`` when one is stored, ``edition.sent`` when its ledger is done. Both are named by
the edition (``msg_edition_built_<id>``, ``msg_edition_sent_<id>``), so each happens once per edition
however many processes or retry runs get there. ``edition.sent`` means every reader's row reached
a final state (sent, failed, ambiguous, suppressed): no row is pending, claimed or deferred.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from newsletter.records.editions import Edition
from newsletter.storage import webhook_outbox
from newsletter.storage.ledger import Ledger
from subscribers import changes
from subscribers.models import Subscriber

OPEN_STATES = ("pending", "claimed", "deferred")
LEFT = ("unsubscribed", "bounced", "complained")


def attach(engine: Engine, endpoints: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Write webhook events for changes made through ``engine`` to these (URL, event types) endpoints."""
    endpoints = tuple(endpoints)
    webhook_outbox.set_endpoints(engine, endpoints)
    if endpoints:
        changes.listen(engine, subscriber_changed)


def subscriber_data(subscriber: Subscriber) -> dict[str, Any]:
    return {"id": subscriber.id, "email": subscriber.email, "status": subscriber.status,
            "topics": list(subscriber.topics), "frequency": subscriber.frequency, "source": subscriber.source}


def subscriber_event(before: Subscriber | None, after: Subscriber) -> str | None:
    """The event type of one change of a subscriber row, or None when its status did not move."""
    if before is None:
        return "subscriber.created"
    if before.status == after.status:
        return None
    if after.status == "active":
        return "subscriber.confirmed" if before.status == "pending" else "subscriber.resubscribed"
    if after.status in LEFT:
        return f"subscriber.{after.status}"
    return None


def subscriber_changed(connection: Connection, before: Subscriber | None, after: Subscriber) -> None:
    """The ``subscribers.changes`` listener: in the transaction of the change."""
    event_type = subscriber_event(before, after)
    if event_type is None:
        return
    data = subscriber_data(after)
    if before is not None:
        data["previous_status"] = before.status
    webhook_outbox.record(connection, event_type, subject=f"subscriber:{after.id}", data=data, now=after.updated)


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
