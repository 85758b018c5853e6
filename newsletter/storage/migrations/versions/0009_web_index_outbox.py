"""Web pages that stay fast: the archive's per-edition index, feed entries and stored pages; the
confirmation outbox; an index on rate-limit events by time (housekeeping deletes by it).

Frozen: it imports no live code. The backfill reads the editions' JSON snapshots as they were stored when
this revision was written, and writes the index rows as they were then, so a later change to the records, the
store or the snapshot format cannot break the upgrade of an old database. (``sa.DateTime`` here is the
DDL the live ``UTCDateTime`` type emits; the backfill copies stored datetimes as they are.)

Revision ID: 0009
Revises: 0008
"""

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UTCDateTime = sa.DateTime
_SPACE = re.compile(r"\s+")
_SUMMARY_CHARS = 1200
_MAX_AUTHORS = 4
_editions = sa.table("editions", sa.column("id", sa.Integer), sa.column("frequency", sa.String),
                     sa.column("date", sa.Date), sa.column("slug", sa.String), sa.column("cutoff", sa.DateTime),
                     sa.column("created", sa.DateTime), sa.column("content", sa.JSON))
_index = sa.table("edition_index", sa.column("edition_id", sa.Integer), sa.column("frequency", sa.String),
                  sa.column("date", sa.Date), sa.column("slug", sa.String), sa.column("cutoff", sa.DateTime),
                  sa.column("created", sa.DateTime), sa.column("paper_count", sa.Integer),
                  sa.column("topics", sa.JSON))
_entries = sa.table("edition_feed_entries", *(sa.column(name) for name in (
    "edition_id", "topic", "position", "date", "paper_id", "title", "abs_url", "authors", "summary", "why")))


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return (cut or text[:limit]) + "…"


def _authors(authors: list[str]) -> str:
    if len(authors) <= _MAX_AUTHORS:
        return ", ".join(authors)
    return f"{', '.join(authors[: _MAX_AUTHORS - 1])} et al. ({len(authors)} authors)"


def _backfill(connection: sa.Connection) -> None:
    """Index every stored edition (each snapshot parsed once)."""
    for row in connection.execute(sa.select(_editions).order_by(_editions.c.id)).mappings().all():
        content: dict[str, Any] = row["content"]
        papers = {paper["paper_id"]: paper for paper in content["papers"]}
        connection.execute(_index.insert().values(
            edition_id=row["id"], frequency=row["frequency"], date=row["date"], slug=row["slug"],
            cutoff=row["cutoff"], created=row["created"], paper_count=len(papers),
            topics=[{"slug": t["slug"], "name": t["name"], "count": len(t["entries"])} for t in content["topics"]],
        ))
        entries = []
        for topic in content["topics"]:
            for position, entry in enumerate(topic["entries"]):
                paper = papers.get(entry["paper_id"])
                if paper is None:
                    continue
                text = _SPACE.sub(" ", paper.get("ai_summary") or paper.get("abstract") or "").strip()
                entries.append({
                    "edition_id": row["id"], "topic": topic["slug"], "position": position, "date": row["date"],
                    "paper_id": paper["paper_id"], "title": paper["title"], "abs_url": paper.get("abs_url"),
                    "authors": _authors(list(paper.get("authors") or ())),
                    "summary": _shorten(text, _SUMMARY_CHARS), "why": "; ".join(entry["reasons"]),
                })
        for start in range(0, len(entries), 500):
            connection.execute(_entries.insert(), entries[start : start + 500])


def upgrade() -> None:
    op.create_table(
        "edition_index",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("cutoff", UTCDateTime, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("paper_count", sa.Integer, nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
    )
    op.create_index("ix_edition_index_listed", "edition_index", ["paper_count", "date", "edition_id"])
    op.create_index("ix_edition_index_slug", "edition_index", ["slug"])
    op.create_table(
        "edition_feed_entries",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("paper_id", sa.String(300), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("abs_url", sa.Text),
        sa.Column("authors", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("why", sa.Text, nullable=False),
    )
    op.create_index("ix_edition_feed_entries_topic_date", "edition_feed_entries",
                    ["topic", "date", "edition_id", "position"])
    op.create_table(
        "edition_pages",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "confirmation_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("mailbox", sa.String(64), nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("consent_ip", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("last_code", sa.Integer),
        sa.Column("last_message", sa.Text),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("updated", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
    )
    op.create_index("ix_confirmation_outbox_state_due", "confirmation_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_confirmation_outbox_subscriber", "confirmation_outbox", ["subscriber_id", "state"])
    op.create_index("ix_rate_events_created", "rate_events", ["created"])
    _backfill(op.get_bind())  # editions stored before the index: each snapshot parsed once, here


def downgrade() -> None:
    op.drop_index("ix_rate_events_created", "rate_events")
    op.drop_table("confirmation_outbox")
    op.drop_table("edition_pages")
    op.drop_table("edition_feed_entries")
    op.drop_table("edition_index")
