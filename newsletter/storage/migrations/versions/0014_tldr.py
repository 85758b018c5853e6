"""Each paper's card TL;DR, stored once with the hash of the text it summarises (a changed abstract recomputes it).

Revision ID: 0014_tldr
Revises: 0013_reader_feeds
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_tldr"
down_revision = "0013_reader_feeds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_tldrs",
        sa.Column("paper_id", sa.String(300), primary_key=True),
        sa.Column("text_hash", sa.String(32), nullable=False),
        sa.Column("tldr", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paper_tldrs")
