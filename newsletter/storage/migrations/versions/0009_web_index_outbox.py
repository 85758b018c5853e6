"""Web pages that stay fast: the archive's per-edition index, feed entries and stored pages; the
confirmation outbox; an index on rate-limit events by time (housekeeping deletes by it).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime
from newsletter.storage.edition_index import backfill

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edition_index",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("cutoff", UTCDateTime, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("paper_count", sa.Integer, nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
    )
    op.create_index("ix_edition_index_listed", "edition_index", ["paper_count", "date", "edition_id"])
    op.create_index("ix_edition_index_slug", "edition_index", ["slug"])
    op.create_table(
        "edition_feed_entries",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("paper_id", sa.String(300), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("abs_url", sa.Text),
        sa.Column("authors", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
    )
    op.create_index("ix_edition_feed_entries_topic_date", "edition_feed_entries",
                    ["topic", "date", "edition_id", "position"])
    op.create_table(
        "edition_pages",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "confirmation_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("mailbox", sa.String(64), nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("consent_ip", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("last_code", sa.Integer),
        sa.Column("last_message", sa.Text),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
    )
    op.create_index("ix_confirmation_outbox_state_due", "confirmation_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_confirmation_outbox_subscriber", "confirmation_outbox", ["subscriber_id", "state"])
    op.create_index("ix_rate_events_created", "rate_events", ["created"])
    backfill(op.get_bind())  # editions stored before the index: each snapshot parsed once, here


def downgrade() -> None:
    op.drop_index("ix_rate_events_created", "rate_events")
    op.drop_table("confirmation_outbox")
    op.drop_table("edition_pages")
    op.drop_table("edition_feed_entries")
    op.drop_table("edition_index")
