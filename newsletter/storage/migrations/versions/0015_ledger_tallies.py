"""The ledger's tallies: per edition, its rows in each state (and the halts), kept by every state change, so
that following a send reads eight rows instead of counting the edition's (``storage/ledger_tallies.py``).
Filled here from the rows of every edition already in the ledger.

Revision ID: 0015_ledger_tallies
Revises: 0014_claim_order
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_ledger_tallies"
down_revision = "0014_claim_order"
branch_labels = None
depends_on = None

KEYS = ("pending", "claimed", "sent", "deferred", "failed", "ambiguous", "suppressed", "halts")


def upgrade() -> None:
    tallies = op.create_table(
        "ledger_tallies",
        sa.Column("edition_id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    deliveries = sa.table("deliveries", sa.column("edition_id", sa.Integer), sa.column("state", sa.String))
    connection = op.get_bind()
    counts = {
        (int(edition_id), str(state)): int(n) for edition_id, state, n in connection.execute(
            sa.select(deliveries.c.edition_id, deliveries.c.state, sa.func.count())
            .group_by(deliveries.c.edition_id, deliveries.c.state))
    }
    editions = sorted({edition_id for edition_id, _ in counts})
    rows = [{"edition_id": e, "key": key, "n": counts.get((e, key), 0)} for e in editions for key in KEYS]
    if rows:
        op.bulk_insert(tallies, rows)


def downgrade() -> None:
    op.drop_table("ledger_tallies")
