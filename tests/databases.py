"""The real database servers of the test machine: scratch PostgreSQL databases, a scratch Redis queue.

PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) run in CI (`scripts/services` starts them
when they are not running). A test that needs one and cannot reach it is skipped with a message saying how to
start it, or fails under CI and scripts/test (``tests.services.unavailable``): nothing is skipped silently.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from newsletter.storage.db import open_database
from tests.services import HOW_TO_START as HOW_TO_START
from tests.services import admin_url as admin_url
from tests.services import redis_url, unavailable


class PostgresServer:
    """Creates scratch databases named ``nl_test_<random>`` and drops them (with their connections) at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self.created: list[str] = []

    def check(self) -> None:
        problem = None
        try:
            with self.admin.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except sa.exc.OperationalError as error:
            problem = str(error).splitlines()[0]
        if problem is not None:  # outside the except clause: one clear line, no chained traceback
            unavailable("postgresql", f"PostgreSQL is not reachable at {make_url(self.admin_url).render_as_string()} "
                                      f"({problem}): {HOW_TO_START}")

    def create(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"nl_test_{secrets.token_hex(6)}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop(make_url(self.admin_url).set(database=name).render_as_string(hide_password=False))
        self.admin.dispose()


def migrated(url: str) -> str:
    """Apply the migrations once (as `open_database` does), closing the connections it used."""
    open_database(url).dispose()
    return url


def empty_tables(url: str) -> None:
    """Delete every row (the migrated schema stays) and restart the id sequences: a fresh store per test.

    DELETE of the few rows a test leaves is much faster than TRUNCATE, which rewrites every table's files.
    """
    engine: Engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no FK order needed
            tables = connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            ).scalars().all()
            for table in tables:
                connection.exec_driver_sql(f'DELETE FROM "{table}"')
            for sequence in connection.exec_driver_sql(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            ).scalars():
                connection.exec_driver_sql(f"SELECT setval('\"{sequence}\"', 1, false)")
    finally:
        engine.dispose()


@contextlib.contextmanager
def scratch_redis() -> Iterator[str]:
    """A Redis database number no one uses now (empty), as a broker URL; its keys are deleted afterwards."""
    import redis

    base = redis_url()
    problem = None
    try:
        redis.Redis.from_url(f"{base}/0", socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as error:
        problem = str(error)
    if problem is not None:
        unavailable("redis", f"Redis is not reachable at {base} ({problem}): {HOW_TO_START}")
    owner = secrets.token_hex(8)
    for number in secrets.SystemRandom().sample(range(1, 16), 15):
        client = redis.Redis.from_url(f"{base}/{number}")
        if client.dbsize() == 0 and client.set("nl-test-owner", owner, nx=True):
            break  # empty, and now ours: a test run beside this one picks another
        client.close()
    else:  # pragma: no cover - every database of the server holds keys
        pytest.fail(f"no empty Redis database (1-15) at {base} for a scratch broker", pytrace=False)
    try:
        yield f"{base}/{number}"
    finally:
        client.flushdb()
        client.close()
