"""JSON API tokens and the webhook outbox (events, and their delivery to each endpoint).

Revision ID: 0014_api_webhooks
Revises: 0013_reader_feeds
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0014_api_webhooks"
down_revision = "0014_admin_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("last_used", UTCDateTime),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(100), nullable=False, unique=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("event", sa.Integer, primary_key=True),
        sa.Column("endpoint", sa.String(2000), primary_key=True),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", UTCDateTime),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "endpoint", "event"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("api_tokens")
