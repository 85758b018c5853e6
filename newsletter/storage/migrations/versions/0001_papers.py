"""Papers, source state, topic matches.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "papers",
        sa.Column("paper_id", sa.String(300), primary_key=True),
        sa.Column("version", sa.Integer),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("authors", sa.JSON, nullable=False),
        sa.Column("abstract", sa.Text, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("primary_category", sa.String(64)),
        sa.Column("abs_url", sa.Text),
        sa.Column("pdf_url", sa.Text),
        sa.Column("hf_url", sa.Text),
        sa.Column("code_url", sa.Text),
        sa.Column("project_url", sa.Text),
        sa.Column("thumbnail_url", sa.Text),
        sa.Column("ai_summary", sa.Text),
        sa.Column("ai_keywords", sa.JSON, nullable=False),
        sa.Column("published", UTCDateTime),
        sa.Column("announce_type", sa.String(32)),
        sa.Column("upvotes", sa.Integer),
        sa.Column("github_stars", sa.Integer),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
    )
    op.create_index("ix_papers_first_seen", "papers", ["first_seen"])
    op.create_table(
        "source_state",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("last_attempt", UTCDateTime),
        sa.Column("last_success", UTCDateTime),
        sa.Column("last_status", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("last_counts", sa.JSON),
    )
    op.create_table(
        "topic_matches",
        sa.Column("paper_id", sa.String(300), sa.ForeignKey("papers.paper_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("strength", sa.Float, nullable=False),
        sa.Column("similarity", sa.Float, nullable=False),
        sa.Column("keywords", sa.JSON, nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
    )
    op.create_index("ix_topic_matches_topic", "topic_matches", ["topic"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("topic_matches")
    op.drop_table("source_state")
    op.drop_table("papers")
