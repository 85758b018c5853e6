"""The subscriber tables, declared in SQLAlchemy Core with their own metadata.

``newsletter``'s Alembic migrations create these tables (the subscriber domain never imports
``newsletter``); a test checks that the migrations and these declarations agree.
Only portable constructs: SQLite by default, PostgreSQL later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

SOURCES = ("import", "web", "cli", "api")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone).

    Declared here because `subscribers` never imports `newsletter`; `newsletter.storage.db` uses this one too.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime")
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
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("confirmed_ip", sa.String(64)),
    sa.Column("unsubscribed_at", UTCDateTime),
    sa.UniqueConstraint("email", name="uq_subscribers_email"),
    sa.Index("ix_subscribers_status_frequency", "status", "frequency"),
    sqlite_autoincrement=True,  # ids are never reused: link tokens name a subscriber by id
)

VOTES = {"more": 1, "less": -1}

paper_feedback = sa.Table(
    "paper_feedback",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("paper_id", sa.String(300), primary_key=True),
    sa.Column("topic", sa.String(64), primary_key=True),
    sa.Column("vote", sa.Integer, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Index("ix_paper_feedback_topic", "topic"),
)
"""A reader's "more like this" (+1) or "less like this" (-1) on one paper in one topic; the latest click
counts. Erased with the reader (the foreign key cascades)."""

SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "deleted", "operator")

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("address_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)
"""Addresses never to be emailed again, by hash only (``subscribers.addresses.address_hash``): the one
trace of a person kept after their data is deleted."""

RATE_KINDS = ("confirmation", "subscribe-ip", "signin-account", "signin-ip")

rate_events = sa.Table(
    "rate_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Index("ix_rate_events_kind_key_created", "kind", "key", "created"),
    sa.Index("ix_rate_events_created", "created"),
)
"""One row per counted event (a confirmation email sent to an address hash, a subscribe request from an
IP hash); rows older than the longest window are deleted by housekeeping (``RateLimits.prune``)."""

EVENT_KINDS = ("hard-bounce", "soft-bounce", "complaint", "unsubscribe")
EVENT_ACTIONS = ("bounced", "complained", "unsubscribed", "counted", "none")

subscriber_events = sa.Table(
    "subscriber_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("diagnostic", sa.Text, nullable=False),
    sa.Column("message_id", sa.String(300)),
    sa.Column("edition_id", sa.Integer),
    sa.Column("attributed_by", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Index("ix_subscriber_events_subscriber_kind_created", "subscriber_id", "kind", "created"),
)
"""What came back about a reader and what was done, with the evidence: the status code, the remote
server's diagnostic text and the Message-ID of our message. Soft bounces are counted from these rows.
Deleted with the reader's personal data."""
