"""The ledger's chat-channel rows: one per (edition, channel), claimed, fenced and recorded like an email row.

States are those of an email row: pending → claimed → sent | deferred | failed | ambiguous (deferred rows
come back when due). The ``posting`` phase is committed under the claim token *before* the HTTP request
that posts the message, so a process killed at any instant leaves a row that either never reached it
(pending again once its claim is freed) or did (``ambiguous``, never posted again automatically).

``channel_state`` holds what is per channel rather than per edition: a pause (a revoked webhook) with its
reason, and the last post's result, for `channels list` and `status`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

POSTING_PHASE = "posting"
CHANNEL_STATES = ("pending", "claimed", "sent", "deferred", "failed", "ambiguous")

rows_table = db.channel_deliveries
state_table = db.channel_state


@dataclass(frozen=True)
class ChannelClaim:
    id: int
    edition_id: int
    channel: str
    token: str
    attempts: int


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    paused_reason: str | None
    last_result: str | None
    last_at: datetime | None


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(rows_table.c.state == "pending",
                  sa.and_(rows_table.c.state == "deferred", rows_table.c.next_attempt_at <= now))


class ChannelLedger:
    def __init__(self, engine: Engine, *, worker: str = "") -> None:
        self.engine = engine
        self.worker = worker

    def add(self, edition_id: int, channels: Sequence[str], *, now: datetime) -> int:
        """Write a pending row for each channel that has none for this edition; returns how many were new."""
        values = [{"edition_id": edition_id, "channel": name, "state": "pending", "phase": "", "attempts": 0,
                   "created": now, "updated": now} for name in channels]
        with self.engine.begin() as connection:
            return db.insert_new(connection, rows_table, values)

    def release_expired(self, edition_id: int, *, now: datetime, dead_workers: Collection[str] = ()) -> None:
        """Free the claims of dead posters: a row that reached the posting phase becomes ambiguous."""
        lapsed: sa.ColumnElement[bool] = rows_table.c.lease_until < now
        if dead_workers:
            lapsed = sa.or_(lapsed, rows_table.c.worker.in_(list(dead_workers)))
        expired = sa.and_(rows_table.c.edition_id == edition_id, rows_table.c.state == "claimed", lapsed)
        with self.engine.begin() as connection:
            connection.execute(
                rows_table.update().where(expired, rows_table.c.phase == POSTING_PHASE)
                .values(state="ambiguous", claim_token=None, updated=now,
                        last_message="the posting process stopped during the post; not posted again")
            )
            connection.execute(rows_table.update().where(expired)
                               .values(state="pending", claim_token=None, phase="", updated=now))

    def claim_holders(self, edition_id: int) -> set[str]:
        with self.engine.connect() as connection:
            return {str(w) for w in connection.execute(
                sa.select(rows_table.c.worker).distinct().where(
                    rows_table.c.edition_id == edition_id, rows_table.c.state == "claimed",
                    rows_table.c.worker.is_not(None))
            ).scalars()}

    def claim(self, edition_id: int, channel: str, *, now: datetime, lease: timedelta) -> ChannelClaim | None:
        """Take this channel's row of the edition when it is due; None when it is not (or another holds it)."""
        token = uuid.uuid4().hex
        mine = sa.and_(rows_table.c.edition_id == edition_id, rows_table.c.channel == channel, _due(now))
        with self.engine.begin() as connection:
            taken = connection.execute(
                rows_table.update().where(mine)
                .values(state="claimed", claim_token=token, lease_until=now + lease, phase="", worker=self.worker,
                        updated=now)
            ).rowcount
            if not taken:
                return None
            row = connection.execute(
                sa.select(rows_table.c.id, rows_table.c.attempts).where(rows_table.c.claim_token == token)
            ).one()
        return ChannelClaim(id=row.id, edition_id=edition_id, channel=channel, token=token, attempts=row.attempts)

    def _claimed(self, claim: ChannelClaim) -> sa.ColumnElement[bool]:
        return sa.and_(rows_table.c.id == claim.id, rows_table.c.state == "claimed",
                       rows_table.c.claim_token == claim.token)

    def mark_posting(self, claim: ChannelClaim, *, now: datetime) -> bool:
        """Commit the posting phase before the post; False when the row is no longer this claim's (fenced)."""
        with self.engine.begin() as connection:
            done = connection.execute(rows_table.update().where(self._claimed(claim))
                                      .values(phase=POSTING_PHASE, updated=now)).rowcount
        return bool(done)

    def release(self, claim: ChannelClaim, *, now: datetime) -> None:
        """Give the row back untouched (not posted: its channel is paused, or the run stops)."""
        with self.engine.begin() as connection:
            connection.execute(rows_table.update().where(self._claimed(claim), rows_table.c.phase != POSTING_PHASE)
                               .values(state="pending", claim_token=None, phase="", updated=now))

    def record(self, claim: ChannelClaim, *, state: str, code: int | None, message: str, now: datetime,
               next_attempt_at: datetime | None = None) -> bool:
        """Store the post's outcome under the claim token (and the channel's last result); False if fenced."""
        with self.engine.begin() as connection:
            done = connection.execute(
                rows_table.update().where(self._claimed(claim))
                .values(state=state, phase="", attempts=rows_table.c.attempts + 1, next_attempt_at=next_attempt_at,
                        last_code=code, last_message=message, claim_token=None, updated=now,
                        sent_at=now if state == "sent" else None)
            ).rowcount
            if done:
                self._set_state(connection, claim.channel, last_result=f"{state}: {message}", last_at=now)
        return bool(done)

    # --- per channel ----------------------------------------------------------------------------------------

    def _set_state(self, connection: sa.Connection, channel: str, **values: Any) -> None:
        exists = connection.execute(sa.select(state_table.c.channel).where(state_table.c.channel == channel)).first()
        if exists is None:
            connection.execute(state_table.insert().values(channel=channel, **values))
        else:
            connection.execute(state_table.update().where(state_table.c.channel == channel).values(**values))

    def note(self, channel: str, result: str, *, now: datetime) -> None:
        """Remember a result that belongs to no edition row (`channels test`)."""
        with self.engine.begin() as connection:
            self._set_state(connection, channel, last_result=result, last_at=now)

    def pause(self, channel: str, reason: str, *, now: datetime) -> None:
        with self.engine.begin() as connection:
            self._set_state(connection, channel, paused_reason=reason, paused_at=now)

    def resume(self, channel: str, *, now: datetime) -> bool:
        """Lift a pause; returns whether the channel was paused."""
        with self.engine.begin() as connection:
            done = connection.execute(
                state_table.update().where(state_table.c.channel == channel, state_table.c.paused_reason.is_not(None))
                .values(paused_reason=None, paused_at=None)
            ).rowcount
        return bool(done)

    def statuses(self) -> dict[str, ChannelStatus]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(state_table)).all()
        return {row.channel: ChannelStatus(channel=row.channel, paused_reason=row.paused_reason,
                                           last_result=row.last_result, last_at=row.last_at) for row in rows}

    # --- reads ----------------------------------------------------------------------------------------------

    def rows(self, edition_id: int) -> list[Mapping[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(
                sa.select(rows_table.c.channel, rows_table.c.state, rows_table.c.attempts, rows_table.c.last_code,
                          rows_table.c.last_message, rows_table.c.next_attempt_at, rows_table.c.sent_at)
                .where(rows_table.c.edition_id == edition_id).order_by(rows_table.c.channel)
            ).all()]

    def editions_due(self, *, now: datetime, skip: Collection[str] = ()) -> list[int]:
        """Editions with a row to post now (pending, deferred and due, or claimed past its lease) for a
        channel not in ``skip`` (the paused ones)."""
        lapsed = sa.and_(rows_table.c.state == "claimed", rows_table.c.lease_until < now)
        wanted = sa.or_(_due(now), lapsed)
        if skip:
            wanted = sa.and_(wanted, rows_table.c.channel.not_in(list(skip)))
        with self.engine.connect() as connection:
            return list(connection.execute(
                sa.select(rows_table.c.edition_id).distinct().where(wanted)
                .order_by(rows_table.c.edition_id)
            ).scalars())

    def counts(self, edition_ids: Collection[int]) -> dict[int, dict[str, int]]:
        """Per edition: its channel rows by state (every state present, zero when none)."""
        result = {edition_id: dict.fromkeys(CHANNEL_STATES, 0) for edition_id in edition_ids}
        if not edition_ids:
            return result
        with self.engine.connect() as connection:
            for edition_id, state, count in connection.execute(
                sa.select(rows_table.c.edition_id, rows_table.c.state, sa.func.count())
                .where(rows_table.c.edition_id.in_(list(edition_ids)))
                .group_by(rows_table.c.edition_id, rows_table.c.state)
            ).all():
                result[edition_id][state] = int(count)
        return result
