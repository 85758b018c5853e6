"""Chat channels in the delivery ledger: one row per (edition, channel), and each channel's pause and last result.

Revision ID: 0012_channels
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0012_channels"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("edition_id", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime),
        sa.Column("claim_token", sa.String(32)),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("worker", sa.String(100)),
        sa.Column("last_code", sa.Integer),
        sa.Column("last_message", sa.Text),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.UniqueConstraint("edition_id", "channel", name="uq_channel_deliveries_edition_channel"),
    )
    op.create_table(
        "channel_state",
        sa.Column("channel", sa.String(100), primary_key=True),
        sa.Column("paused_reason", sa.Text),
        sa.Column("paused_at", UTCDateTime),
        sa.Column("last_result", sa.Text),
        sa.Column("last_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("channel_state")
    op.drop_table("channel_deliveries")
