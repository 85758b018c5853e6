"""All SQL of the confirmation outbox: one row per sign-up request, sent later by one background sender.

Why a table and not a send inside the request: a sign-up used to open its own SMTP connection in the web
process, so a slow relay piled up hundreds of connections (615 after 12 s) until the site ran out of file
descriptors. Now ``POST /subscribe`` only writes a row and answers; ``newsletter.web.outbox`` sends the rows
with bounded concurrency, retries 4xx and lost connections, and a row claimed by a process that died is
taken again once its lease ends — so nothing is lost on a restart.

A row is also *the request* a confirmation link applies: its topics and frequency, and the IP it came
from. The link names the row, not the subscriber, so an old link can never apply a stranger's later
choices. States: ``queued`` → ``sending`` → ``sent`` | ``queued`` (retry) | ``failed``; ``sent`` →
``confirmed``; ``skipped`` for requests that get no email (over the mailbox's quota, suppressed address).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.storage import db

OutboxState = Literal["queued", "sending", "sent", "failed", "confirmed", "skipped"]
FINAL_STATES = ("sent", "failed", "confirmed", "skipped")
table = db.confirmation_outbox


@dataclass(frozen=True, kw_only=True)
class OutboxItem:
    id: int
    subscriber_id: int
    email: str
    topics: tuple[str, ...]
    frequency: str
    consent_ip: str | None
    state: OutboxState
    attempts: int
    created: datetime
    updated: datetime
    sent_at: datetime | None


def _item(row: Mapping[Any, Any]) -> OutboxItem:
    return OutboxItem(
        id=row["id"], subscriber_id=row["subscriber_id"], email=row["email"], topics=tuple(row["topics"] or ()),
        frequency=row["frequency"], consent_ip=row["consent_ip"], state=cast(OutboxState, row["state"]),
        attempts=row["attempts"], created=row["created"], updated=row["updated"], sent_at=row["sent_at"],
    )


class ConfirmationOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- the web form's side ------------------------------------------------------------------------------

    def same_request(self, *, subscriber_id: int, topics: Sequence[str], frequency: str,
                     since: datetime) -> OutboxItem | None:
        """The newest unconfirmed request of this subscriber with exactly these choices, made after ``since``."""
        query = (sa.select(table).where(table.c.subscriber_id == subscriber_id, table.c.frequency == frequency,
                                        table.c.state.in_(("queued", "sending", "sent")), table.c.created > since)
                 .order_by(table.c.id.desc()).limit(5))
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                if tuple(row["topics"] or ()) == tuple(topics):
                    return _item(row)
        return None

    def add(self, *, subscriber_id: int, email: str, mailbox: str, topics: Sequence[str], frequency: str,
            consent_ip: str | None, now: datetime, state: Literal["queued", "skipped"] = "queued",
            reason: str | None = None) -> int:
        """A new request; ``skipped`` ones are kept (the same work for every address) but never sent."""
        values: dict[str, Any] = {
            "subscriber_id": subscriber_id, "email": email, "mailbox": mailbox, "topics": list(topics),
            "frequency": frequency, "consent_ip": consent_ip, "state": state, "attempts": 0,
            "next_attempt_at": now, "last_message": reason, "created": now, "updated": now,
        }
        with self.engine.begin() as connection:
            result = connection.execute(table.insert().values(values))
        return int(cast(Sequence[int], result.inserted_primary_key)[0])

    def resend(self, item_id: int, *, now: datetime) -> bool:
        """Send an already sent request's email again (the same link); False if it is not in ``sent``."""
        with self.engine.begin() as connection:
            result = connection.execute(
                table.update().where(table.c.id == item_id, table.c.state == "sent")
                .values(state="queued", next_attempt_at=now, updated=now)
            )
        return bool(cast(Any, result).rowcount)

    def get(self, item_id: int) -> OutboxItem | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(table).where(table.c.id == item_id)).mappings().first()
        return _item(row) if row else None

    def mark_confirmed(self, item_id: int, *, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(table.update().where(table.c.id == item_id).values(state="confirmed", updated=now))

    # --- the sender's side --------------------------------------------------------------------------------

    def claim(self, *, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
        """Take up to ``limit`` due rows: queued and due, or sending with an expired lease (a dead process).

        Each row is taken with a guarded UPDATE, so two processes never both take the same row.
        """
        due = sa.or_(sa.and_(table.c.state == "queued", table.c.next_attempt_at <= now),
                     sa.and_(table.c.state == "sending", table.c.lease_until < now))
        taken: list[OutboxItem] = []
        with self.engine.begin() as connection:
            rows = connection.execute(sa.select(table).where(due).order_by(table.c.id).limit(limit)).mappings().all()
            for row in rows:
                guard = sa.and_(table.c.id == row["id"], table.c.state == row["state"],
                                table.c.updated == row["updated"])
                result = connection.execute(table.update().where(guard).values(
                    state="sending", lease_until=now + lease, updated=now))
                if cast(Any, result).rowcount:
                    taken.append(_item({**row, "state": "sending", "updated": now}))
        return taken

    def _finish(self, connection: Connection, item_id: int, **values: Any) -> None:
        connection.execute(table.update().where(table.c.id == item_id, table.c.state == "sending").values(**values))

    def mark_sent(self, item_id: int, *, now: datetime, code: int | None, message: str) -> None:
        with self.engine.begin() as connection:
            self._finish(connection, item_id, state="sent", sent_at=now, lease_until=None, last_code=code,
                         last_message=message[:500], attempts=table.c.attempts + 1, updated=now)

    def defer(self, item_id: int, *, now: datetime, until: datetime, code: int | None, message: str) -> None:
        with self.engine.begin() as connection:
            self._finish(connection, item_id, state="queued", next_attempt_at=until, lease_until=None,
                         last_code=code, last_message=message[:500], attempts=table.c.attempts + 1, updated=now)

    def fail(self, item_id: int, *, now: datetime, code: int | None, message: str) -> None:
        with self.engine.begin() as connection:
            self._finish(connection, item_id, state="failed", lease_until=None, last_code=code,
                         last_message=message[:500], attempts=table.c.attempts + 1, updated=now)

    def release(self, item_ids: Sequence[int], *, now: datetime) -> None:
        """Give back rows taken but not sent (the process is stopping): due again at once."""
        if not item_ids:
            return
        with self.engine.begin() as connection:
            connection.execute(table.update().where(table.c.id.in_(list(item_ids)), table.c.state == "sending")
                               .values(state="queued", next_attempt_at=now, lease_until=None, updated=now))

    def next_due(self) -> datetime | None:
        """When the earliest queued row is due (the sender sleeps until then, or until woken)."""
        with self.engine.connect() as connection:
            return cast(datetime | None, connection.execute(
                sa.select(sa.func.min(table.c.next_attempt_at)).where(table.c.state == "queued")).scalar())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(table.c.state, sa.func.count()).group_by(table.c.state))
            return {state: int(count) for state, count in rows}

    def prune(self, *, before: datetime) -> int:
        """Delete finished rows last changed before ``before`` (housekeeping). Returns how many."""
        with self.engine.begin() as connection:
            result = connection.execute(
                table.delete().where(table.c.state.in_(FINAL_STATES), table.c.updated < before))
        return int(cast(Any, result).rowcount or 0)
