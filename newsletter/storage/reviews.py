"""Editors' reviews of built editions: pinned and dropped papers, a note, the approval (all SQL here).

A row exists only once an editor touched the edition; no row is an untouched, unapproved edition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db


@dataclass(frozen=True, kw_only=True)
class Review:
    edition_id: int
    pinned: tuple[str, ...] = ()
    """Paper ids, first pinned first: they lead every topic they are in."""
    dropped: tuple[str, ...] = ()
    note: str = ""
    approved_at: datetime | None = None
    approved_by: str | None = None


class ReviewStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, edition_id: int) -> Review | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(db.edition_reviews)
                                     .where(db.edition_reviews.c.edition_id == edition_id)).mappings().first()
        if row is None:
            return None
        return Review(edition_id=row["edition_id"], pinned=tuple(row["pinned"]), dropped=tuple(row["dropped"]),
                      note=row["note"], approved_at=row["approved_at"], approved_by=row["approved_by"])

    def save(self, review: Review, *, now: datetime) -> Review:
        values: dict[str, Any] = {"pinned": list(review.pinned), "dropped": list(review.dropped), "note": review.note,
                                  "approved_at": review.approved_at, "approved_by": review.approved_by,
                                  "updated": now}
        table = db.edition_reviews
        with self.engine.begin() as connection:
            changed = connection.execute(table.update().where(table.c.edition_id == review.edition_id)
                                         .values(**values)).rowcount
            if not changed:
                connection.execute(table.insert().values(edition_id=review.edition_id, **values))
        return review

    def approved_without_ledger(self) -> list[int]:
        """Approved editions none of whose deliveries were written yet: the next run sends them."""
        table = db.edition_reviews
        with self.engine.connect() as connection:
            return list(connection.execute(
                sa.select(table.c.edition_id).where(
                    table.c.approved_at.is_not(None),
                    ~table.c.edition_id.in_(sa.select(db.deliveries.c.edition_id).distinct()))
                .order_by(table.c.edition_id)).scalars())

    def awaiting(self, edition_ids: Sequence[int]) -> list[int]:
        """Of ``edition_ids``, those not approved and with no deliveries written (waiting for an editor)."""
        if not edition_ids:
            return []
        table = db.edition_reviews
        with self.engine.connect() as connection:
            approved = set(connection.execute(sa.select(table.c.edition_id).where(
                table.c.edition_id.in_(edition_ids), table.c.approved_at.is_not(None))).scalars())
            sent = set(connection.execute(sa.select(db.deliveries.c.edition_id).distinct().where(
                db.deliveries.c.edition_id.in_(edition_ids))).scalars())
        return [i for i in edition_ids if i not in approved and i not in sent]
