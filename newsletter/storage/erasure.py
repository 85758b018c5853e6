"""Erasure of one subscriber's traces from the newsletter's own tables (the subscriber domain cannot see them).

The delivery ledger keeps each message's address and name; after an erasure request those are blanked and
rows still waiting to be sent are suppressed. ``sent_papers`` (subscriber id → paper ids) is deleted. The
subscriber row itself is removed by ``SubscriberStore.delete_personal_data``; ids are never reused.
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db


def forget_subscriber_rows(engine: Engine, subscriber_id: int) -> int:
    """Blank the address and name in every ledger row of this subscriber (rows being sent right now keep
    theirs until they finish), suppress rows not yet sent, and delete their sent-papers record.
    Returns the number of ledger rows touched."""
    deliveries = db.deliveries
    with engine.begin() as connection:
        connection.execute(
            deliveries.update()
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state.in_(("pending", "deferred")))
            .values(state="suppressed", last_message="personal data deleted on request")
        )
        result = connection.execute(
            deliveries.update()
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state != "claimed")
            .values(email="", name="")
        )
        connection.execute(sa.delete(db.sent_papers).where(db.sent_papers.c.subscriber_id == subscriber_id))
    return int(cast(Any, result).rowcount or 0)
