"""Erasure of one subscriber's traces from the newsletter's own tables (the subscriber domain cannot see them).

The delivery ledger keeps each message's address and name; after an erasure request those (and the last
reply, which may quote the address) are blanked in every row and rows still waiting to be sent are
suppressed, in the same transaction as the subscriber's own erasure. ``sent_papers`` (subscriber id →
paper ids) is deleted. The subscriber row itself is removed by ``SubscriberStore.delete_personal_data``;
ids are never reused.
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db
from newsletter.storage import ledger_tallies as tallies


def forget_subscriber_rows(engine: Engine, subscriber_id: int, *, connection: sa.Connection | None = None) -> int:
    """Blank the address, the name and the last reply (which may quote the address) in every ledger row of
    this subscriber, suppress rows not yet sent, and delete their sent-papers record. Returns the number of
    ledger rows touched. Pass ``connection`` to do it in the caller's transaction.

    Claimed rows are blanked too: their message was built when they were claimed, so a send in flight
    still completes, and a claimed row that comes back is suppressed (the subscriber is gone).
    """
    if connection is None:
        with engine.begin() as own:
            return forget_subscriber_rows(engine, subscriber_id, connection=own)
    deliveries = db.deliveries
    changes = tallies.TallyChanges()
    for state in ("pending", "deferred"):  # one UPDATE per state: the editions it returns move that state's tally
        changes.move_each(connection.execute(
            deliveries.update()
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state == state)
            .values(state="suppressed")
            .returning(deliveries.c.edition_id)
        ).scalars().all(), state, "suppressed")
    result = connection.execute(
        deliveries.update()
        .where(deliveries.c.subscriber_id == subscriber_id)
        .values(email="", name="", last_message="personal data deleted on request")
    )
    connection.execute(sa.delete(db.sent_papers).where(db.sent_papers.c.subscriber_id == subscriber_id))
    changes.write(connection)
    return int(cast(Any, result).rowcount or 0)
