"""The ledger's (edition, state) index carries the row id too: a claim takes the first due rows of an edition by
id, and on PostgreSQL the two-column index could not give them in id order, so each claim walked the primary key
past every row already sent (30 ms a claim 40,000 rows into a send; a send's claims grew with the square of the
list, issue 30). SQLite's indexes end with the rowid already; there the index is only rebuilt.

Revision ID: 0014_claim_order
Revises: 0014_api_webhooks (chained after the parallel 0014 revisions; written against 0013_reader_feeds)
"""

from alembic import op

revision = "0014_claim_order"
down_revision = "0014_api_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_edition_state", table_name="deliveries")
    op.create_index("ix_deliveries_edition_state", "deliveries", ["edition_id", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_edition_state", table_name="deliveries")
    op.create_index("ix_deliveries_edition_state", "deliveries", ["edition_id", "state"])
