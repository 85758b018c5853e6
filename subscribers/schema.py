"""The subscriber tables, declared in SQLAlchemy Core with their own metadata.

``newsletter``'s Alembic migrations create these tables (the subscriber domain never imports
``newsletter``); a test checks that the migrations and these declarations agree.
Only portable constructs: SQLite by default, PostgreSQL later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
FREQUENCIES = ("daily", "weekly")
SOURCES = ("import", "web", "cli")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the subscriber store; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("topics", sa.JSON, nullable=False),
    sa.Column("frequency", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("consent_at", UTCDateTime),
    sa.Column("consent_ip", sa.String(64)),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.UniqueConstraint("email", name="uq_subscribers_email"),
    sa.Index("ix_subscribers_status_frequency", "status", "frequency"),
)
