"""The SQL of bulk import and export: a chunk of rows read and written in a few statements, never row by row.

Import: ``lookup`` fetches the stored subscribers and suppression entries of a chunk's addresses (two
``IN (...)`` queries), and ``apply`` writes the chunk's plans (``subscribers.import_plan``): one ``DELETE`` of
the suppression entries replaced or lifted, one executemany ``INSERT`` of the new subscribers (and a query of
their ids), one executemany ``UPDATE`` per set of changed columns, one ``INSERT`` of the suppression entries
set and one of the carried evidence. Export: ``export_pages`` reads the list by id pages with each page's
suppression entries and evidence in two more queries, so memory stays at one page whatever the list's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subscribers import changes as change_listeners
from subscribers.addresses import address_hash
from subscribers.consent_store import EVENT_FIELDS
from subscribers.import_plan import Plan
from subscribers.models import Status, Subscriber, Suppression
from subscribers.schema import subscriber_events, subscribers, suppressions
from subscribers.store_reads import _row_to_subscriber

CHUNK = 1000
"""Rows per statement and per import transaction: few round trips, and ``IN`` lists well under SQLite's and
PostgreSQL's parameter limits."""


def lookup(connection: Connection, emails: Sequence[str]) -> tuple[dict[str, Subscriber], dict[str, Suppression]]:
    """The stored subscribers (by address) and suppression entries (by address) of these normal-form addresses."""
    stored = {s.email: s for s in (_row_to_subscriber(row) for row in connection.execute(
        sa.select(subscribers).where(subscribers.c.email.in_(list(emails)))).mappings())}
    hashes = {address_hash(email): email for email in emails}
    entries = {hashes[row["address_hash"]]: Suppression(**dict(row)) for row in connection.execute(
        sa.select(suppressions).where(suppressions.c.address_hash.in_(list(hashes)))).mappings()}
    return stored, entries


def apply(connection: Connection, plans: Sequence[Plan]) -> dict[str, Subscriber]:
    """Write the plans of one chunk in the caller's transaction; returns the inserted subscribers by address."""
    live = [plan for plan in plans if plan.refused is None]
    touched = [address_hash(plan.row.email) for plan in live if plan.suppression is not None]
    if touched:
        connection.execute(suppressions.delete().where(suppressions.c.address_hash.in_(touched)))
    inserted: dict[str, Subscriber] = {}
    new_rows = [plan.insert for plan in live if plan.insert is not None]
    if new_rows:  # executemany, then the new ids (RETURNING in order would be one statement a row on SQLite)
        connection.execute(subscribers.insert(), new_rows)
        query = sa.select(subscribers.c.email, subscribers.c.id).where(
            subscribers.c.email.in_([row["email"] for row in new_rows]))
        ids = {email: new_id for email, new_id in connection.execute(query)}
        for row in new_rows:
            inserted[row["email"]] = _stored(row, ids[row["email"]])
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for plan in live:
        if plan.changes and plan.existing is not None:
            columns = tuple(sorted(plan.changes))
            by_columns.setdefault(columns, []).append({**plan.changes, "b_id": plan.existing.id})
    for values in by_columns.values():
        connection.execute(subscribers.update().where(subscribers.c.id == sa.bindparam("b_id")), values)
    entries = [{"address_hash": address_hash(plan.row.email), "reason": plan.suppression[0],
                "created": plan.suppression[1]} for plan in live if isinstance(plan.suppression, tuple)]
    if entries:
        connection.execute(suppressions.insert(), entries)
    events = [{**{k: event[k] for k in EVENT_FIELDS}, "subscriber_id": inserted[plan.row.email].id,
               "edition_id": None, "status": str(event["status"] or ""), "diagnostic": str(event["diagnostic"] or ""),
               "attributed_by": str(event["attributed_by"] or "")}
              for plan in live if plan.events and plan.row.email in inserted for event in plan.events]
    if events:
        connection.execute(subscriber_events.insert(), events)
    if change_listeners.listening(connection):  # webhook events, in this chunk's transaction like the row writes
        for plan in live:
            if plan.existing is None and plan.row.email in inserted:
                change_listeners.notify(connection, None, inserted[plan.row.email])
            elif plan.existing is not None and plan.changes:
                change_listeners.notify(connection, plan.existing, plan.result())
    return inserted


def _stored(row: dict[str, Any], new_id: int) -> Subscriber:
    """The subscriber as the database now holds the inserted ``row`` (times in UTC, topics a tuple)."""
    values: dict[str, Any] = {k: (v.astimezone(UTC) if isinstance(v, datetime) else v) for k, v in row.items()}
    values["topics"] = tuple(values["topics"])
    return Subscriber(id=new_id, **values)


def count(engine: Engine, *, status: Status | None = None) -> int:
    """How many subscribers an export of this status (or of all) writes."""
    query = sa.select(sa.func.count()).select_from(subscribers)
    if status is not None:
        query = query.where(subscribers.c.status == status)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def export_pages(engine: Engine, *, status: Status | None = None,
                 page: int = CHUNK) -> Iterator[list[tuple[Subscriber, dict[str, str]]]]:
    """The list in id order, a page at a time, each reader with its export cells ``suppression``,
    ``suppressed_at`` and ``evidence`` (JSON)."""
    after = 0
    while True:
        query = sa.select(subscribers).where(subscribers.c.id > after).order_by(subscribers.c.id).limit(page)
        if status is not None:
            query = query.where(subscribers.c.status == status)
        with engine.connect() as connection:
            found = [_row_to_subscriber(row) for row in connection.execute(query).mappings()]
            if not found:
                return
            yield [(s, extras) for s, extras in zip(found, _extras(connection, found), strict=True)]
        after = found[-1].id


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _extras(connection: Connection, found: list[Subscriber]) -> list[dict[str, str]]:
    hashes = {address_hash(s.email): s.id for s in found}
    entries = {hashes[row["address_hash"]]: row for row in connection.execute(
        sa.select(suppressions).where(suppressions.c.address_hash.in_(list(hashes)))).mappings()}
    events: dict[int, list[dict[str, Any]]] = {}
    query = (sa.select(subscriber_events.c.subscriber_id, *(subscriber_events.c[name] for name in EVENT_FIELDS))
             .where(subscriber_events.c.subscriber_id.in_([s.id for s in found])).order_by(subscriber_events.c.id))
    for row in connection.execute(query).mappings():
        events.setdefault(row["subscriber_id"], []).append({k: _iso(row[k]) for k in EVENT_FIELDS})
    cells = []
    for s in found:
        entry, evidence = entries.get(s.id), events.get(s.id)
        cells.append({
            "suppression": str(entry["reason"]) if entry else "",
            "suppressed_at": entry["created"].isoformat() if entry else "",
            "evidence": json.dumps(evidence, ensure_ascii=False, separators=(",", ":")) if evidence else "",
        })
    return cells
