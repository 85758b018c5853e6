"""Read-only questions about who got which variant of an edition (``send --to`` picks a copy by them), and
which delivered emails carried a paper to a reader (feedback votes are checked against them).

Kept apart from ``ledger.py`` (which fills and drives delivery) because nothing here changes a row.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage.db import deliveries, variant_papers


def readers_by_variant(engine: Engine, edition_id: int) -> dict[str, int]:
    """Variant key to the number of ledger rows (readers) that have it, in any state."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(deliveries.c.variant_key, sa.func.count())
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.variant_key)
        ).all()
    return {str(key): int(count) for key, count in rows}


def variant_of(engine: Engine, edition_id: int, subscriber_id: int) -> str | None:
    """The variant key of one subscriber's ledger row for the edition, if they have one."""
    with engine.connect() as connection:
        key = connection.execute(
            sa.select(deliveries.c.variant_key)
            .where(deliveries.c.edition_id == edition_id, deliveries.c.subscriber_id == subscriber_id)
        ).scalar()
    return str(key) if key is not None else None


def sent_with_paper(engine: Engine, subscriber_id: int, paper_id: str) -> dict[int, datetime]:
    """Per edition whose email to this subscriber carried the paper and is ``sent``: when it was sent.

    What a feedback vote is checked against (``newsletter.web.feedback``): only a delivered email's paper
    can be voted on, and only for a while after it arrived.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(deliveries.c.edition_id, deliveries.c.sent_at)
            .join(variant_papers, sa.and_(variant_papers.c.edition_id == deliveries.c.edition_id,
                                          variant_papers.c.variant_key == deliveries.c.variant_key))
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state == "sent",
                   variant_papers.c.paper_id == paper_id)
        ).all()
    return {int(edition_id): sent_at for edition_id, sent_at in rows if sent_at is not None}
