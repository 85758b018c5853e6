"""Editions, papers sent per subscriber, subscribers.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime
from subscribers.schema import UTCDateTime as SubscriberDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "editions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("cutoff", UTCDateTime, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("paper_count", sa.Integer, nullable=False),
        sa.Column("empty_reason", sa.Text),
        sa.Column("content", sa.JSON, nullable=False),
        sa.UniqueConstraint("frequency", "date", name="uq_editions_frequency_date"),
        sa.UniqueConstraint("slug", name="uq_editions_slug"),
    )
    op.create_table(
        "sent_papers",
        sa.Column("subscriber_id", sa.Integer, primary_key=True),
        sa.Column("paper_id", sa.String(300), primary_key=True),
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id"), nullable=False),
    )
    op.create_index("ix_sent_papers_paper_id", "sent_papers", ["paper_id"])
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("consent_at", SubscriberDateTime),
        sa.Column("consent_ip", sa.String(64)),
        sa.Column("created", SubscriberDateTime, nullable=False),
        sa.Column("updated", SubscriberDateTime, nullable=False),
        sa.UniqueConstraint("email", name="uq_subscribers_email"),
    )
    op.create_index("ix_subscribers_status_frequency", "subscribers", ["status", "frequency"])


def downgrade() -> None:
    op.drop_table("subscribers")
    op.drop_table("sent_papers")
    op.drop_table("editions")
