"""Storage: every SQL statement of the newsletter, over one SQLAlchemy engine (SQLite or PostgreSQL).

Takes plain records (papers, matches, edition snapshots, ledger rows, run records) and gives them back;
the schema and its Alembic migrations live here too."""

from newsletter.storage import api_tables as api_tables
from newsletter.storage import console_reads as console_reads  # declares an index of the ledger on db.metadata
from newsletter.storage import ledger_tallies as ledger_tallies  # declares the ledger's tallies on db.metadata
from newsletter.storage import operators as operators  # declares the console's tables on db.metadata
