"""An index to find our message by its Message-ID: inbound mail attributes a report without a VERP token by the
Message-ID it quotes, and without the index each such report read the whole delivery ledger.

Revision ID: 0014_scale_indexes
Revises: 0013_reader_feeds
"""

from alembic import op

revision = "0014_scale_indexes"
down_revision = "0014_feed_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_message_id", table_name="deliveries")
