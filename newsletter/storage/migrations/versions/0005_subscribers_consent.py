"""Subscribers: consent and confirmation columns, never-reused ids, suppression list, rate-limit events.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from subscribers.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Recreated (batch) so that SQLite never hands a deleted subscriber's id to a new one (AUTOINCREMENT):
    # link tokens name a subscriber by id, and an id must not come back for someone else. PostgreSQL's
    # sequences never reuse ids: there the columns are simply added (a copy would leave the sequence behind).
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", recreate="always" if sqlite else "auto",
                              table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("confirmed_at", UTCDateTime))
        batch.add_column(sa.Column("confirmed_ip", sa.String(64)))
        batch.add_column(sa.Column("unsubscribed_at", UTCDateTime))
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "rate_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_index("ix_rate_events_kind_key_created", "rate_events", ["kind", "key", "created"])


def downgrade() -> None:
    op.drop_table("rate_events")
    op.drop_table("suppressions")
    with op.batch_alter_table("subscribers", recreate="always") as batch:
        batch.drop_column("unsubscribed_at")
        batch.drop_column("confirmed_ip")
        batch.drop_column("confirmed_at")
