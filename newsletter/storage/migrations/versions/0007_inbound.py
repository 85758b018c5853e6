"""Inbound mail: what came back about each reader (subscriber_events) and every message received.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriber_events",
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
    )
    op.create_index("ix_subscriber_events_subscriber_kind_created", "subscriber_events",
                    ["subscriber_id", "kind", "created"])
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("received", UTCDateTime, nullable=False),
        sa.Column("door", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("edition_id", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary),
        sa.UniqueConstraint("key", name="uq_inbound_messages_key"),
    )
    op.create_index("ix_inbound_messages_received", "inbound_messages", ["received"])


def downgrade() -> None:
    op.drop_table("inbound_messages")
    op.drop_table("subscriber_events")
