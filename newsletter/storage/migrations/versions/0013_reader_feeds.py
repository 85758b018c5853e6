"""Private reader feeds: each reader's secret feed key, and an index to find a reader's deliveries.

Revision ID: 0013_reader_feeds
Revises: 0012_channels
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0013_reader_feeds"
down_revision = "0012_channels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reader_feeds",
        sa.Column("subscriber_id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_index("ix_deliveries_subscriber", "deliveries", ["subscriber_id", "edition_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscriber", table_name="deliveries")
    op.drop_table("reader_feeds")
