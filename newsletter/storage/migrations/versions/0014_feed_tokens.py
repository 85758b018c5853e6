"""Signed feed tokens in emails: the time before which a reader's tokens are refused (set when they rotate).

Revision ID: 0014_feed_tokens
Revises: 0014_tldr
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0014_feed_tokens"
down_revision = "0014_tldr"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reader_feeds") as batch:
        batch.add_column(sa.Column("revoked_before", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("reader_feeds") as batch:
        batch.drop_column("revoked_before")
