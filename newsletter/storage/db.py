"""Database engine, schema and migrations.

SQLite by default, PostgreSQL later: only portable SQLAlchemy Core constructs here (no SQLite-only SQL).
The schema is declared once below; Alembic migrations in ``newsletter/migrations`` create it and are applied
automatically when a store is opened, so an operator never runs a migration by hand."""

from __future__ import annotations

import sqlite3
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import StoreError
from subscribers.schema import UTCDateTime

MIGRATIONS = Path(__file__).with_name("migrations")


metadata = sa.MetaData()

papers = sa.Table(
    "papers",
    metadata,
    sa.Column("paper_id", sa.String(300), primary_key=True),
    sa.Column("version", sa.Integer),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("authors", sa.JSON, nullable=False),
    sa.Column("abstract", sa.Text, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("primary_category", sa.String(64)),
    sa.Column("abs_url", sa.Text),
    sa.Column("pdf_url", sa.Text),
    sa.Column("hf_url", sa.Text),
    sa.Column("code_url", sa.Text),
    sa.Column("project_url", sa.Text),
    sa.Column("thumbnail_url", sa.Text),
    sa.Column("ai_summary", sa.Text),
    sa.Column("ai_keywords", sa.JSON, nullable=False),
    sa.Column("published", UTCDateTime),
    sa.Column("announce_type", sa.String(32)),
    sa.Column("upvotes", sa.Integer),
    sa.Column("github_stars", sa.Integer),
    sa.Column("sources", sa.JSON, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.Index("ix_papers_first_seen", "first_seen"),
)

source_state = sa.Table(
    "source_state",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_attempt", UTCDateTime),
    sa.Column("last_success", UTCDateTime),
    sa.Column("last_status", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_counts", sa.JSON),
)

topic_matches = sa.Table(
    "topic_matches",
    metadata,
    sa.Column("paper_id", sa.String(300), sa.ForeignKey("papers.paper_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("topic", sa.String(64), primary_key=True),
    sa.Column("strength", sa.Float, nullable=False),
    sa.Column("similarity", sa.Float, nullable=False),
    sa.Column("keywords", sa.JSON, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("closest", sa.String(500), nullable=False, server_default=""),
    sa.Column("closest_kind", sa.String(16), nullable=False, server_default=""),
    sa.Column("terms", sa.JSON, nullable=False, server_default="[]"),
    sa.Index("ix_topic_matches_topic", "topic"),
)

paper_embeddings = sa.Table(
    "paper_embeddings",
    metadata,
    sa.Column("paper_id", sa.String(300), sa.ForeignKey("papers.paper_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("model", sa.String(100), primary_key=True),
    sa.Column("text_hash", sa.String(32), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)
"""One sentence embedding per paper and model (float32, little-endian); ``text_hash`` tells when it is stale."""

text_embeddings = sa.Table(
    "text_embeddings", metadata,
    sa.Column("text_hash", sa.String(32), primary_key=True), sa.Column("model", sa.String(100), primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False), sa.Column("vector", sa.LargeBinary, nullable=False),
)
"""Embeddings of texts that are not stored papers (a `topics evaluate` sample), by text hash and model."""

meta = sa.Table("meta", metadata, sa.Column("key", sa.String(100), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))

paper_tldrs = sa.Table(  # each paper's card TL;DR, made once (storage/tldrs.py); text_hash: of what it summarises
    "paper_tldrs", metadata, sa.Column("paper_id", sa.String(300), primary_key=True),
    sa.Column("text_hash", sa.String(32), nullable=False), sa.Column("tldr", sa.Text, nullable=False),
)

editions = sa.Table(
    "editions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("frequency", sa.String(16), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("slug", sa.String(64), nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("cutoff", UTCDateTime, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("paper_count", sa.Integer, nullable=False),
    sa.Column("empty_reason", sa.Text),
    sa.Column("content", sa.JSON, nullable=False),
    sa.UniqueConstraint("frequency", "date", name="uq_editions_frequency_date"),
    sa.UniqueConstraint("slug", name="uq_editions_slug"),
)

edition_index = sa.Table(
    "edition_index",
    metadata,
    sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("frequency", sa.String(16), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("slug", sa.String(64), nullable=False),
    sa.Column("cutoff", UTCDateTime, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("paper_count", sa.Integer, nullable=False),
    sa.Column("topics", sa.JSON, nullable=False),
    sa.Index("ix_edition_index_listed", "paper_count", "date", "edition_id"),
    sa.Index("ix_edition_index_slug", "slug"),
)
"""One small row per edition (``newsletter.records.index``): what the archive lists, without the snapshot."""

edition_feed_entries = sa.Table(
    "edition_feed_entries",
    metadata,
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
    sa.Index("ix_edition_feed_entries_topic_date", "topic", "date", "edition_id", "position"),
)
"""Each (topic, paper) of each edition with its Atom fields: a feed reads only its newest rows."""

edition_pages = sa.Table(
    "edition_pages",
    metadata,
    sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("variant", sa.String(64), primary_key=True),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)
"""An archived edition's web page, rendered once per template fingerprint and site root, then served as is."""

confirmation_outbox = sa.Table(
    "confirmation_outbox",
    metadata,
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
    sa.Index("ix_confirmation_outbox_state_due", "state", "next_attempt_at"),
    sa.Index("ix_confirmation_outbox_subscriber", "subscriber_id", "state"),
)
"""Confirmation emails to send: one row per sign-up request, written by the web form, sent by one background
sender (``newsletter.web.outbox``). The row is also the request a confirm link applies (topics, frequency)."""

sent_papers = sa.Table(
    "sent_papers",
    metadata,
    sa.Column("subscriber_id", sa.Integer, primary_key=True),
    sa.Column("paper_id", sa.String(300), primary_key=True),
    sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id"), nullable=False),
    sa.Index("ix_sent_papers_paper_id", "paper_id"),
)
"""Papers recorded as sent to a subscriber when a ledger was filled, by versions before migration 0011; still
read, no longer written (the ledger's ``sent`` rows and ``variant_papers`` say it now), and pruned by the
housekeeping job once past the longest edition window."""


deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("edition_id", sa.Integer, nullable=False),
    sa.Column("subscriber_id", sa.Integer, nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("variant_key", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("claim_token", sa.String(32)),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("worker", sa.String(100)),
    sa.Column("last_code", sa.Integer),
    sa.Column("last_message", sa.Text),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("edition_id", "subscriber_id", name="uq_deliveries_edition_subscriber"),
    sa.Index("ix_deliveries_edition_state", "edition_id", "state", "id"),  # claims read due rows in id order
    sa.Index("ix_deliveries_claim_token", "claim_token"),
    sa.Index("ix_deliveries_subscriber", "subscriber_id", "edition_id"),
    sa.Index("ix_deliveries_message_id", "message_id"),  # a returned message names ours: inbound attribution
)

variants = sa.Table(
    "variants",
    metadata,
    sa.Column("edition_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("nonce", sa.String(64), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
)

variant_papers = sa.Table(
    "variant_papers",
    metadata,
    sa.Column("edition_id", sa.Integer, primary_key=True),
    sa.Column("variant_key", sa.String(64), primary_key=True),
    sa.Column("paper_id", sa.String(300), primary_key=True),
)
"""The papers each stored variant's email carries, written with the variant: a reader whose row of it is
``sent`` (or still on its way) is not offered them again in another edition (``Ledger.papers_carried``)."""


channel_deliveries = sa.Table(  # the ledger's chat-channel rows (storage/channels.py)
    "channel_deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("edition_id", sa.Integer, nullable=False), sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("state", sa.String(16), nullable=False), sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False), sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("claim_token", sa.String(32)), sa.Column("lease_until", UTCDateTime), sa.Column("sent_at", UTCDateTime),
    sa.Column("worker", sa.String(100)), sa.Column("last_code", sa.Integer), sa.Column("last_message", sa.Text),
    sa.Column("created", UTCDateTime, nullable=False), sa.Column("updated", UTCDateTime, nullable=False),
    sa.UniqueConstraint("edition_id", "channel", name="uq_channel_deliveries_edition_channel"),
)
channel_state = sa.Table(  # each channel's pause (a revoked webhook) and last result
    "channel_state", metadata,
    sa.Column("channel", sa.String(100), primary_key=True), sa.Column("paused_reason", sa.Text),
    sa.Column("paused_at", UTCDateTime), sa.Column("last_result", sa.Text), sa.Column("last_at", UTCDateTime),
)
reader_feeds = sa.Table(  # the secret key in each reader's private feed URL (storage/reader_feeds.py)
    "reader_feeds", metadata, sa.Column("subscriber_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(64), nullable=False), sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("revoked_before", UTCDateTime),  # signed feed tokens issued before this are refused (rotation)
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(32), nullable=False),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("finished", UTCDateTime),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("worker", sa.String(100), nullable=False),
    sa.Index("ix_runs_job_started", "job", "started"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False),
    sa.Column("since", UTCDateTime),
)

edition_fills = sa.Table(
    "edition_fills",
    metadata,
    sa.Column("frequency", sa.String(16), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("finished", UTCDateTime),
)
"""A ledger fill begun (``finished`` NULL) or done, by edition frequency and date: see storage/fills.py."""

edition_reviews = sa.Table(
    "edition_reviews",
    metadata,
    sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pinned", sa.JSON, nullable=False),
    sa.Column("dropped", sa.JSON, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("approved_at", UTCDateTime),
    sa.Column("approved_by", sa.String(100)),
    sa.Column("updated", UTCDateTime, nullable=False),
)
"""An editor's changes to a built edition (`newsletter edition pin|drop|note|approve`); no row: untouched."""


inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("received", UTCDateTime, nullable=False),
    sa.Column("door", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("subscriber_id", sa.Integer),
    sa.Column("edition_id", sa.Integer),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary),
    sa.UniqueConstraint("key", name="uq_inbound_messages_key"),
    sa.Index("ix_inbound_messages_received", "received"),
)
"""One row per message that came back (bounce, complaint, unsubscribe, anything): what it was and what was
done. ``key`` (a hash of its Message-ID and recipients, or of its bytes) makes a redelivered message a no-op.
``raw`` is kept only for quarantined messages, for the operator to read."""


def insert_ignoring_duplicates(engine: Engine, table: sa.Table) -> Any:
    """INSERT that skips rows whose key exists, in each supported dialect (resumed runs insert again)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # not loaded by every SQLite command (a sending child)
        return postgresql.insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise StoreError(f"unsupported database {engine.dialect.name!r}: use SQLite or PostgreSQL")


def insert_new(connection: sa.Connection, table: sa.Table, values: list[dict[str, Any]]) -> int:
    """Insert many rows, skipping those whose key exists; returns how many were really added.

    Counted from RETURNING: the rowcount of a many-row INSERT is -1 on PostgreSQL (psycopg).
    """
    statement = insert_ignoring_duplicates(connection.engine, table).returning(*table.primary_key.columns)
    return len(connection.execute(statement, values).all())


SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite statement waits for another process's write lock before failing."""


def is_sqlite_busy(error: SQLAlchemyError) -> bool:
    """Whether SQLite refused because another connection holds the write lock ("database is locked")."""
    orig = getattr(error, "orig", None)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    return getattr(orig, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(url: str) -> Engine:
    """Open the database; SQLite gets WAL and a busy timeout so the web app and a sender can share it.

    PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``; a bare ``postgresql://`` means the
    same), and every pooled connection is checked before use, so a restarted server costs no failed statement.
    """
    shown = url
    try:
        parsed = sa.make_url(url)
        shown = parsed.render_as_string(hide_password=True)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() == "postgresql":
            engine = sa.create_engine(parsed, pool_pre_ping=True)
        else:
            engine = sa.create_engine(parsed)
    except ImportError as exc:
        raise StoreError(f"cannot open database {shown!r}: {exc} (for PostgreSQL, install the `scale` extra: "
                         "pip install -e '.[scale]')") from None
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"cannot open database {shown!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create database {shown!r}: cannot create its folder {str(folder)!r} "
                                 f"({exc.strerror or exc})") from None
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own words, on one line (SQLAlchemy adds the statement and a link on further lines)."""
    original = getattr(exc, "orig", None)
    text = str(original) if original is not None else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _sqlite_hint(engine: Engine) -> str:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return ""
    path = Path(database).resolve()
    return f"; check that this user can write to {str(path.parent)!r} and to {path.name!r} in it"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it already is."""
    from alembic import command  # imported here: commands that never open the database start faster
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")
    except SQLAlchemyError as exc:
        reason = _reason(exc)
        if "unable to open" in reason or "readonly" in reason or "read-only" in reason:
            raise StoreError(f"cannot write database {_shown(engine)!r}: {reason}{_sqlite_hint(engine)}") from None
        raise StoreError(f"cannot migrate database {_shown(engine)!r}: {reason}") from None


_created: weakref.WeakSet[Engine] = weakref.WeakSet()


def is_new(engine: Engine) -> bool:
    """Whether ``open_database`` found no schema at all and created it: a new, empty database.

    A command that only reads and meets one is usually pointed at the wrong place (a mistyped path makes
    SQLite create a new file), so the CLI warns.
    """
    return engine in _created


def open_database(url: str) -> Engine:
    engine = create_engine(url)
    try:
        fresh = not sa.inspect(engine).has_table("alembic_version")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open database {_shown(engine)!r}: {_reason(exc)}{_sqlite_hint(engine)}") from None
    migrate(engine)
    if fresh:
        _created.add(engine)
    return engine
