"""The webhook outbox: events written with the change that caused them, and their delivery per endpoint.

``set_endpoints(engine, …)`` says which endpoint URLs want which event types (from ``[[webhooks]]``);
``record`` then writes one ``webhook_events`` row and one ``webhook_deliveries`` row per interested endpoint,
on the caller's connection, so an event exists exactly when its change committed. Nothing is written when
no endpoint wants the event. The delivery loop (``newsletter.usecases.webhooks``) reads ``due`` rows in
event order and marks them delivered or failed; an event that has not been delivered holds back the later
events of the same subject (one subscriber, one edition) to that endpoint, so they arrive in order.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.storage.api_tables import webhook_deliveries, webhook_events

events = webhook_events
deliveries = webhook_deliveries

_endpoints: weakref.WeakKeyDictionary[Any, tuple[tuple[str, frozenset[str]], ...]] = weakref.WeakKeyDictionary()


def set_endpoints(engine: Engine, endpoints: Iterable[tuple[str, Iterable[str]]]) -> None:
    """The endpoints (URL, event types) that events written through ``engine`` go to."""
    _endpoints[engine.pool] = tuple((url, frozenset(types)) for url, types in endpoints)


def wanted(connection: Connection, event_type: str) -> list[str]:
    """The endpoint URLs that want ``event_type`` on this connection's engine."""
    return [url for url, types in _endpoints.get(connection.engine.pool, ()) if event_type in types]


def record(connection: Connection, event_type: str, *, subject: str, data: Mapping[str, Any], now: datetime,
           event_id: str | None = None) -> str | None:
    """Write one event for every endpoint that wants it, in the caller's transaction; its id, or None when no
    endpoint wants it or ``event_id`` was written before (events named by their cause happen once)."""
    urls = wanted(connection, event_type)
    if not urls:
        return None
    event_id = event_id or f"msg_{uuid.uuid4().hex}"
    if connection.execute(sa.select(events.c.id).where(events.c.event_id == event_id)).first() is not None:
        return None
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": dict(data)},
                      ensure_ascii=False, separators=(",", ":"))
    result = connection.execute(events.insert().values(event_id=event_id, type=event_type, subject=subject,
                                                       payload=body, created=now))
    row_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    connection.execute(deliveries.insert(), [
        {"event": row_id, "endpoint": url, "subject": subject, "state": "pending", "attempts": 0,
         "next_attempt_at": now} for url in urls
    ])
    return event_id


@dataclass(frozen=True, kw_only=True)
class Due:
    """One pending delivery, with what is sent: the body exactly as stored, signed as it is."""

    event: int
    event_id: str
    type: str
    subject: str
    payload: str
    created: datetime
    attempts: int
    next_attempt_at: datetime


@dataclass(frozen=True, kw_only=True)
class OutboxRow:
    event_id: str
    type: str
    subject: str
    endpoint: str
    state: str
    attempts: int
    created: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


class WebhookOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, event_type: str, *, subject: str, data: Mapping[str, Any], now: datetime,
               event_id: str | None = None) -> str | None:
        """``record`` in a transaction of its own (for events that follow a change, not part of one)."""
        with self.engine.begin() as connection:
            return record(connection, event_type, subject=subject, data=data, now=now, event_id=event_id)

    def due(self, endpoint: str, *, limit: int = 200) -> list[Due]:
        """The endpoint's pending deliveries, oldest event first (whether or not their retry time came)."""
        query = (
            sa.select(deliveries.c.event, events.c.event_id, events.c.type, deliveries.c.subject, events.c.payload,
                      events.c.created, deliveries.c.attempts, deliveries.c.next_attempt_at)
            .join(events, events.c.id == deliveries.c.event)
            .where(deliveries.c.endpoint == endpoint, deliveries.c.state == "pending")
            .order_by(deliveries.c.event).limit(limit)
        )
        with self.engine.connect() as connection:
            return [Due(**row) for row in connection.execute(query).mappings()]

    def delivered(self, event: int, endpoint: str, *, now: datetime) -> None:
        self._set(event, endpoint, state="delivered", attempts=deliveries.c.attempts + 1, delivered_at=now,
                  last_error=None)

    def failed(self, event: int, endpoint: str, *, error: str, retry_at: datetime | None) -> None:
        """A failed attempt: tried again at ``retry_at``, or given up (``failed``) when it is None."""
        values: dict[str, Any] = {"attempts": deliveries.c.attempts + 1, "last_error": error[:500]}
        if retry_at is None:
            values["state"] = "failed"
        else:
            values["next_attempt_at"] = retry_at
        self._set(event, endpoint, **values)

    def _set(self, event: int, endpoint: str, **values: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(deliveries.update().where(deliveries.c.event == event,
                                                         deliveries.c.endpoint == endpoint).values(**values))

    def prune(self, *, before: datetime) -> int:
        """Delete the delivered and given-up rows of events older than ``before`` (and those events once no
        row is left); pending ones are kept whatever their age. Returns how many delivery rows went."""
        old_events = sa.select(events.c.id).where(events.c.created < before)
        with self.engine.begin() as connection:
            deleted = connection.execute(deliveries.delete().where(deliveries.c.state != "pending",
                                                                   deliveries.c.event.in_(old_events))).rowcount
            connection.execute(events.delete().where(
                events.c.created < before, ~sa.exists().where(deliveries.c.event == events.c.id)))
        return int(deleted or 0)

    def rows(self, *, limit: int = 50, state: str | None = None) -> list[OutboxRow]:
        """The newest deliveries first (``webhooks list``)."""
        query = (
            sa.select(events.c.event_id, events.c.type, deliveries.c.subject, deliveries.c.endpoint,
                      deliveries.c.state, deliveries.c.attempts, events.c.created, deliveries.c.next_attempt_at,
                      deliveries.c.delivered_at, deliveries.c.last_error)
            .join(events, events.c.id == deliveries.c.event)
            .order_by(deliveries.c.event.desc(), deliveries.c.endpoint).limit(limit)
        )
        if state is not None:
            query = query.where(deliveries.c.state == state)
        with self.engine.connect() as connection:
            return [OutboxRow(**row) for row in connection.execute(query).mappings()]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per endpoint: how many deliveries are pending, delivered, failed."""
        query = sa.select(deliveries.c.endpoint, deliveries.c.state, sa.func.count()).group_by(
            deliveries.c.endpoint, deliveries.c.state)
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for endpoint, state, count in connection.execute(query):
                found.setdefault(str(endpoint), {"pending": 0, "delivered": 0, "failed": 0})[str(state)] = int(count)
        return found
