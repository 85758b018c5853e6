"""The tables of the JSON API and the webhooks (migration 0014_api_webhooks), on the newsletter's metadata.

Imported by ``newsletter.storage`` itself, so the schema is complete wherever storage is used.
"""

from __future__ import annotations

import sqlalchemy as sa

from newsletter.storage.db import metadata
from subscribers.schema import UTCDateTime

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_used", UTCDateTime),
)
"""Bearer tokens of the JSON API: only the SHA-256 of each 256-bit random token is kept."""

webhook_events = sa.Table(
    "webhook_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(100), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)
"""One row per event that happened, written in the transaction of the change where the change allows."""

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("event", sa.Integer, primary_key=True),
    sa.Column("endpoint", sa.String(2000), primary_key=True),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", UTCDateTime),
    sa.Index("ix_webhook_deliveries_due", "state", "endpoint", "event"),
)
"""The outbox: one row per event and receiving endpoint (its URL), ``pending`` until delivered or given up."""
