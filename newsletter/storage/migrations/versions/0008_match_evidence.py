"""Reader feedback on papers; sample embeddings by text hash; what each topic match rests on.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_feedback",
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("paper_id", sa.String(300), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("vote", sa.Integer, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_index("ix_paper_feedback_topic", "paper_feedback", ["topic"])
    op.create_table(
        "text_embeddings",
        sa.Column("text_hash", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    with op.batch_alter_table("topic_matches") as batch:
        batch.add_column(sa.Column("closest", sa.String(500), nullable=False, server_default=""))
        batch.add_column(sa.Column("closest_kind", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("terms", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("topic_matches") as batch:
        batch.drop_column("terms")
        batch.drop_column("closest_kind")
        batch.drop_column("closest")
    op.drop_table("text_embeddings")
    op.drop_index("ix_paper_feedback_topic", table_name="paper_feedback")
    op.drop_table("paper_feedback")
