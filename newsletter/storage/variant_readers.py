"""Read-only questions about who got which variant of an edition (``send --to`` picks a copy by them).

Kept apart from ``ledger.py`` (which fills and drives delivery) because nothing here changes a row.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage.db import deliveries


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
