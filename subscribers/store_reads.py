"""The reads of subscribers and the suppression list, and the checks of what a caller hands in.

``SubscriberStore`` (``subscribers.store``, the writes) inherits these; apart so neither module grows past
what one reads at once. Knows nothing of ``newsletter``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from subscribers.addresses import address_hash, normalise_email
from subscribers.errors import NotFoundError, SubscribersError, UnknownTopicError
from subscribers.models import FREQUENCIES, STATUSES, Frequency, Status, Subscriber, Suppression
from subscribers.schema import subscribers, suppressions

_IDS_PER_QUERY = 500


def ids_in(column: sa.ColumnElement[int], chunk: Sequence[int]) -> sa.ColumnElement[bool]:
    """Rows whose ``column`` is one of ``chunk`` (ids in ascending order), *or more*: the caller keeps the ids it
    wants. A dense chunk (its ids span less than twice its size: a list's readers, mostly) is read as the range
    ``first … last``, two bound values instead of hundreds; psycopg parses each placeholder of a statement in
    Python, and at 100,000 readers the 200 statements of 500 placeholders each were seconds of a ledger fill.
    """
    if chunk[-1] - chunk[0] < 2 * len(chunk):
        return column.between(chunk[0], chunk[-1])
    return column.in_(chunk)
"""Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits."""


def _row_to_subscriber(row: sa.RowMapping) -> Subscriber:
    values: dict[str, Any] = dict(row)
    values["topics"] = tuple(values["topics"] or ())
    return Subscriber(**values)


def check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise SubscribersError(f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}")


class SubscriberReads:
    """Reads and checks; ``SubscriberStore`` adds the writes."""

    def __init__(self, engine: Engine, *, topics: Sequence[str] | None = None) -> None:
        self.engine = engine
        self.topics: tuple[str, ...] | None = tuple(topics) if topics is not None else None

    # --- checks ---------------------------------------------------------------------------------------------

    def check_topics(self, topics: Iterable[str], *, required: bool = False) -> tuple[str, ...]:
        """Topics in the order given, each once; unknown slugs are an error naming the valid ones."""
        chosen = tuple(dict.fromkeys(t.strip() for t in topics if t.strip()))
        if self.topics is not None:
            unknown = [t for t in chosen if t not in self.topics]
            if unknown:
                raise UnknownTopicError(unknown, list(self.topics))
        if required and not chosen:
            valid = f": {', '.join(self.topics)}" if self.topics else ""
            raise SubscribersError(f"choose at least one topic{valid}")
        return chosen

    def default_topics(self) -> tuple[str, ...]:
        """What a subscriber added without topics gets: every topic."""
        return self.topics or ()

    @staticmethod
    def check_frequency(frequency: str) -> Frequency:
        check_choice(frequency, FREQUENCIES, "frequency")
        return cast(Frequency, frequency)

    # --- reads ----------------------------------------------------------------------------------------------

    def get(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as connection:
            return self._get(connection, subscriber_id)

    @staticmethod
    def _get(connection: Connection, subscriber_id: int) -> Subscriber | None:
        row = connection.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).mappings().first()
        return _row_to_subscriber(row) if row else None

    @classmethod
    def _require(cls, connection: Connection, subscriber_id: int) -> Subscriber:
        subscriber = cls._get(connection, subscriber_id)
        if subscriber is None:
            raise NotFoundError(f"no subscriber {subscriber_id}")
        return subscriber

    @staticmethod
    def _get_by_email(connection: Connection, email: str) -> Subscriber | None:
        query = sa.select(subscribers).where(subscribers.c.email == normalise_email(email))
        row = connection.execute(query).mappings().first()
        return _row_to_subscriber(row) if row else None

    def get_by_email(self, email: str) -> Subscriber | None:
        with self.engine.connect() as connection:
            return self._get_by_email(connection, email)

    def require(self, email: str) -> Subscriber:
        """The subscriber with this address, or NotFoundError."""
        found = self.get_by_email(email)
        if found is None:
            raise NotFoundError(f"no subscriber {normalise_email(email)!r}")
        return found

    def list_all(
        self,
        *,
        status: Status | None = None,
        frequency: Frequency | None = None,
        topic: str | None = None,
    ) -> list[Subscriber]:
        """Every subscriber (filtered when asked), in id order."""
        query = sa.select(subscribers).order_by(subscribers.c.id)
        if status is not None:
            check_choice(status, STATUSES, "status")
            query = query.where(subscribers.c.status == status)
        if frequency is not None:
            query = query.where(subscribers.c.frequency == self.check_frequency(frequency))
        if topic is not None:
            self.check_topics([topic])
        with self.engine.connect() as connection:
            found = [_row_to_subscriber(row) for row in connection.execute(query).mappings()]
        return [s for s in found if topic is None or topic in s.topics]

    def page(
        self,
        *,
        status: Status | None = None,
        frequency: Frequency | None = None,
        topic: str | None = None,
        limit: int,
        offset: int = 0,
    ) -> tuple[int, list[Subscriber]]:
        """How many subscribers match, and ``limit`` of them from ``offset`` on, in id order (``list_all``'s
        filters, counted and cut in SQL: a page of a large list reads only that page)."""
        condition: list[sa.ColumnElement[bool]] = []
        if status is not None:
            check_choice(status, STATUSES, "status")
            condition.append(subscribers.c.status == status)
        if frequency is not None:
            condition.append(subscribers.c.frequency == self.check_frequency(frequency))
        if topic is not None:
            slug = "".join(self.check_topics([topic]))
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", slug):
                raise SubscribersError(f"a topic slug is lowercase letters, digits and '-', not {topic[:40]!r}")
            # topics are a JSON list: the slug in quotes is one of them (a slug has no quote, % or _)
            condition.append(sa.cast(subscribers.c.topics, sa.Text).like(f'%"{slug}"%'))
        where = sa.and_(sa.true(), *condition)
        with self.engine.connect() as connection:
            total = int(connection.execute(sa.select(sa.func.count()).select_from(subscribers).where(where))
                        .scalar_one())
            rows = connection.execute(sa.select(subscribers).where(where).order_by(subscribers.c.id)
                                      .limit(limit).offset(offset)).mappings()
            return total, [_row_to_subscriber(row) for row in rows]

    def list_active(self, *, frequency: Frequency | None = None) -> list[Subscriber]:
        """Active subscribers (of one frequency when given), in id order."""
        return self.list_all(status="active", frequency=frequency)

    def active_id_list(self, *, frequency: Frequency | None = None) -> list[int]:
        """Ids of the active subscribers (of one frequency when given), in id order.

        A sender resuming an edition needs only these to see who has no ledger row yet: loading every
        reader's full row was most of a no-op `send` at 20,000 readers.
        """
        query = sa.select(subscribers.c.id).where(subscribers.c.status == "active").order_by(subscribers.c.id)
        if frequency is not None:
            query = query.where(subscribers.c.frequency == self.check_frequency(frequency))
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def get_many(self, ids: Sequence[int]) -> list[Subscriber]:
        """These subscribers (those that exist), in id order."""
        found: list[Subscriber] = []
        wanted = sorted(set(ids))
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[start : start + _IDS_PER_QUERY]
                query = sa.select(subscribers).where(ids_in(subscribers.c.id, chunk)).order_by(subscribers.c.id)
                keep = set(chunk)
                found += [_row_to_subscriber(row) for row in connection.execute(query).mappings() if row["id"] in keep]
        return found

    def active_ids(self) -> sa.Select[tuple[int]]:
        """A subquery of active subscriber ids, so a sender can re-check consent inside its own statements."""
        return sa.select(subscribers.c.id).where(subscribers.c.status == "active")

    def counts_by_status(self) -> dict[str, int]:
        """Subscribers per status, every status present (0 when none), in the order of ``STATUSES``."""
        query = sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status)
        with self.engine.connect() as connection:
            found = {status: int(count) for status, count in connection.execute(query)}
        return {status: found.get(status, 0) for status in STATUSES}

    def suppression(self, email: str) -> Suppression | None:
        """The suppression entry of an address, if it has one."""
        with self.engine.connect() as connection:
            return self._suppression(connection, email)

    @staticmethod
    def _suppression(connection: Connection, email: str) -> Suppression | None:
        row = connection.execute(
            sa.select(suppressions).where(suppressions.c.address_hash == address_hash(email))
        ).mappings().first()
        return Suppression(**dict(row)) if row else None
