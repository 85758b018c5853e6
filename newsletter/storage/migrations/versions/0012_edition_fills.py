"""Ledger fills in progress: an edition whose fill was cut off (a killed `serve`) is completed later.

Editions filled before this revision have no row and count as filled.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edition_fills",
        sa.Column("frequency", sa.String(16), primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("started", UTCDateTime, nullable=False),
        sa.Column("finished", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("edition_fills")
