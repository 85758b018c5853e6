"""Stored sentence embeddings of papers, for the `embedding` matching method.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_embeddings",
        sa.Column(
            "paper_id", sa.String(300), sa.ForeignKey("papers.paper_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("text_hash", sa.String(32), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("paper_embeddings")
