"""The web console: operator accounts, their server-side sessions, the audit log of operator actions, and an
index of the ledger by state (the rows needing attention, counted by `status` and the overview).

Revision ID: 0014_admin_console
Revises: 0013_reader_feeds
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0014_admin_console"
down_revision = "0014_scale_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("password_changed", UTCDateTime, nullable=False),
        sa.UniqueConstraint("email", name="uq_operators_email"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "operator_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("expires", UTCDateTime, nullable=False),
    )
    op.create_index("ix_operator_sessions_expires", "operator_sessions", ["expires"])
    op.create_table(
        "operator_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_operator_audit_at", "operator_audit", ["at"])
    op.create_index("ix_deliveries_state", "deliveries", ["state"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_state", table_name="deliveries")
    op.drop_index("ix_operator_audit_at", table_name="operator_audit")
    op.drop_table("operator_audit")
    op.drop_index("ix_operator_sessions_expires", table_name="operator_sessions")
    op.drop_table("operator_sessions")
    op.drop_table("operators")
