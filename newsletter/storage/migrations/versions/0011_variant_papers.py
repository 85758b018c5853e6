"""The papers of each stored variant: a reader's `sent` row of a variant now records its papers as received.

Variants stored before this revision have no rows here; their readers' papers were recorded in
``sent_papers`` when their ledger was filled, which is still read, so nothing is lost. A variant of an
edition still being sent gets its rows when its next reader is added.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "variant_papers",
        sa.Column("edition_id", sa.Integer, primary_key=True),
        sa.Column("variant_key", sa.String(64), primary_key=True),
        sa.Column("paper_id", sa.String(300), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("variant_papers")
