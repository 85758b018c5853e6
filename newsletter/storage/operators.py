"""The web console's accounts, sessions and audit log (all SQL here); the tables are declared here too.

Passwords arrive already hashed (``newsletter.usecases.operators`` hashes them with Argon2id); sessions are
kept by the SHA-256 of their random id, so a copy of the database holds no cookie that signs anyone in.
Deleting a session row is signing out: the cookie that named it then names nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.storage import db
from subscribers.schema import UTCDateTime

operators = sa.Table(
    "operators",
    db.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("password_changed", UTCDateTime, nullable=False),
    sa.UniqueConstraint("email", name="uq_operators_email"),
    sqlite_autoincrement=True,
)
"""Who may sign in to /admin/ (`newsletter admin add`), with the Argon2id hash of their password."""

operator_sessions = sa.Table(
    "operator_sessions",
    db.metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False),
    sa.Index("ix_operator_sessions_expires", "expires"),
)
"""One row per signed-in browser, by the hash of its cookie's random id; gone at sign-out."""

operator_audit = sa.Table(
    "operator_audit",
    db.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(320), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_operator_audit_at", "at"),
)
"""Every operator action (who, what, when), appended by ``record``; never changed."""


@dataclass(frozen=True)
class Operator:
    id: int
    email: str
    password_hash: str
    created: datetime
    password_changed: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    detail: str


def _operator(row: sa.RowMapping) -> Operator:
    return Operator(row["id"], row["email"], row["password_hash"], row["created"], row["password_changed"])


class OperatorStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- accounts ------------------------------------------------------------------------------------------

    def add(self, email: str, password_hash: str, *, now: datetime) -> Operator | None:
        """The new account, or None when the address already has one."""
        try:
            with self.engine.begin() as connection:
                new_id = connection.execute(operators.insert().values(
                    email=email, password_hash=password_hash, created=now, password_changed=now)).inserted_primary_key
        except IntegrityError:
            return None
        assert new_id is not None  # an insert into a table with a primary key always returns it
        return Operator(int(new_id[0]), email, password_hash, now, now)

    def get_by_email(self, email: str) -> Operator | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(operators).where(operators.c.email == email)).mappings().first()
        return _operator(row) if row is not None else None

    def all(self) -> list[Operator]:
        with self.engine.connect() as connection:
            return [_operator(r) for r in connection.execute(sa.select(operators).order_by(operators.c.id)).mappings()]

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(operators)).scalar_one())

    def set_password(self, operator_id: int, password_hash: str, *, now: datetime) -> None:
        """Change the hash and end every session of the account (a changed password signs everyone out)."""
        with self.engine.begin() as connection:
            connection.execute(operators.update().where(operators.c.id == operator_id)
                               .values(password_hash=password_hash, password_changed=now))
            connection.execute(operator_sessions.delete().where(operator_sessions.c.operator_id == operator_id))

    def remove(self, operator_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(operator_sessions.delete().where(operator_sessions.c.operator_id == operator_id))
            connection.execute(operators.delete().where(operators.c.id == operator_id))

    # --- sessions ------------------------------------------------------------------------------------------

    def open_session(self, id_hash: str, operator_id: int, *, now: datetime, expires: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(operator_sessions.delete().where(operator_sessions.c.expires <= now))
            connection.execute(operator_sessions.insert().values(id_hash=id_hash, operator_id=operator_id,
                                                                 created=now, expires=expires))

    def session_operator(self, id_hash: str, *, now: datetime) -> Operator | None:
        """The account a live session belongs to; None for an unknown, ended or expired session."""
        query = (sa.select(operators).join(operator_sessions, operator_sessions.c.operator_id == operators.c.id)
                 .where(operator_sessions.c.id_hash == id_hash, operator_sessions.c.expires > now))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _operator(row) if row is not None else None

    def close_session(self, id_hash: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(operator_sessions.delete().where(operator_sessions.c.id_hash == id_hash))
        return bool(getattr(result, "rowcount", 0))

    # --- audit ---------------------------------------------------------------------------------------------

    def record(self, *, actor: str, action: str, detail: str, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(operator_audit.insert().values(at=now, actor=actor[:320], action=action[:64],
                                                              detail=detail))

    def audit(self, *, limit: int = 100, before_id: int | None = None, actor: str | None = None) -> list[AuditEntry]:
        """Newest first; ``before_id`` pages back (the smallest id of the page before)."""
        query = sa.select(operator_audit).order_by(operator_audit.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(operator_audit.c.id < before_id)
        if actor is not None:
            query = query.where(operator_audit.c.actor == actor)
        with self.engine.connect() as connection:
            return [AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["detail"])
                    for r in connection.execute(query).mappings()]
