"""All database access for subscribers. Takes an engine; knows nothing of the newsletter package.

Minimal for now (add, look up, list the active readers of a frequency); the subscriber issue adds consent,
preferences, suppression and import/export here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from subscribers.errors import SubscribersError
from subscribers.models import Frequency, Source, Status, Subscriber
from subscribers.schema import FREQUENCIES, SOURCES, STATUSES, subscribers


def normalise_email(email: str) -> str:
    """Addresses are stored and compared trimmed and lower-case."""
    return email.strip().lower()


def _row_to_subscriber(row: sa.RowMapping) -> Subscriber:
    values: dict[str, Any] = dict(row)
    values["topics"] = tuple(values["topics"] or ())
    return Subscriber(**values)


class SubscriberStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        email: str,
        *,
        now: datetime,
        name: str = "",
        topics: Sequence[str] = (),
        frequency: Frequency = "daily",
        status: Status = "active",
        source: Source = "cli",
    ) -> Subscriber:
        """Insert a new subscriber; an address already on the list is an error."""
        address = normalise_email(email)
        if "@" not in address or any(c.isspace() for c in address):
            raise SubscribersError(f"not an email address: {email!r}")
        for value, allowed, what in ((frequency, FREQUENCIES, "frequency"), (status, STATUSES, "status"),
                                     (source, SOURCES, "source")):
            if value not in allowed:
                raise SubscribersError(f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}")
        if self.get_by_email(address) is not None:
            raise SubscribersError(f"{address} is already on the list")
        values = {
            "email": address,
            "name": " ".join(name.split()),
            "status": status,
            "topics": list(dict.fromkeys(topics)),
            "frequency": frequency,
            "source": source,
            "created": now,
            "updated": now,
        }
        with self.engine.begin() as connection:
            result = connection.execute(subscribers.insert().values(values))
            new_id = cast(Sequence[int], result.inserted_primary_key)[0]
        found = self.get(int(new_id))
        assert found is not None  # just inserted in a committed transaction
        return found

    def get(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).mappings().first()
        return _row_to_subscriber(row) if row else None

    def get_by_email(self, email: str) -> Subscriber | None:
        query = sa.select(subscribers).where(subscribers.c.email == normalise_email(email))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _row_to_subscriber(row) if row else None

    def list_active(self, *, frequency: Frequency | None = None) -> list[Subscriber]:
        """Active subscribers (of one frequency when given), in id order."""
        query = sa.select(subscribers).where(subscribers.c.status == "active").order_by(subscribers.c.id)
        if frequency is not None:
            query = query.where(subscribers.c.frequency == frequency)
        with self.engine.connect() as connection:
            return [_row_to_subscriber(row) for row in connection.execute(query).mappings()]

    def active_ids(self) -> sa.Select[tuple[int]]:
        """A subquery of active subscriber ids, so a sender can re-check consent inside its own statements."""
        return sa.select(subscribers.c.id).where(subscribers.c.status == "active")

    def mark_bounced(self, subscriber_id: int, *, now: datetime) -> bool:
        """A permanent recipient refusal (5.1.x): no more email to this address. Returns whether it changed."""
        with self.engine.begin() as connection:
            result = connection.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id, subscribers.c.status == "active")
                .values(status="bounced", updated=now)
            )
        return bool(cast(Any, result).rowcount)
