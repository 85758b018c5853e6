"""Operator experience: since when a `serve` holds the lease, and editors' reviews of editions.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("since", UTCDateTime))
    op.create_table(
        "edition_reviews",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("pinned", sa.JSON, nullable=False),
        sa.Column("dropped", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("approved_at", UTCDateTime),
        sa.Column("approved_by", sa.String(100)),
        sa.Column("updated", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("edition_reviews")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("since")
