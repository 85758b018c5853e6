"""Shared fixtures: real feed files, config files written the way an operator writes them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.config import DATABASE_URL_ENV, Settings, load_settings
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from newsletter.storage.papers import PaperStore
from tests.databases import PostgresServer, admin_url, empty_tables, migrated
from tests.mailsink import MailSink
from tests.services import require
from tests.support import dkim_key_pair

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

TOPICS_TOML = '''
[[topics]]
slug = "agents"
name = "LLM agents"
description = "Autonomous agents built on large language models that plan, call tools and act."
keywords = ["agent", "tool use", "multi-agent"]
categories = ["cs.MA"]

[[topics]]
slug = "reasoning"
name = "Reasoning"
description = "Mathematical and multi-step reasoning of language models."
keywords = ["reasoning", "chain-of-thought"]

[[topics]]
slug = "medical"
name = "Medical imaging"
description = "Medical image analysis of CT and MRI scans."
keywords = ["medical imaging", "clinical"]
exclude_keywords = ["drug"]
'''


POSTGRES_FIXTURES = frozenset({"postgres", "postgres_session_url", "fresh_postgres"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers a test gets from its fixtures: on the real PostgreSQL server it ``needs("postgresql")``; loading
    the embedding model it needs the extra and is slow by nature (`-m "not slow"` leaves it out too)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
        if on_postgres or POSTGRES_FIXTURES & fixtures:
            item.add_marker(pytest.mark.needs("postgresql"))
        if "minilm" in fixtures:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.needs("embeddings"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture: skip (or under CI fail) a test whose ``needs`` are missing (``tests.services``)."""
    for mark in item.iter_markers("needs"):
        require(*mark.args)


def fixture_path(relative: str) -> Path:
    return FIXTURES / relative


def write_config(
    folder: Path, sources: list[tuple[str, str, str]], *, extra: str = "", topics: str = TOPICS_TOML
) -> Path:
    """Write a config file with the given (name, kind, url) sources; returns its path."""
    lines = [
        "[newsletter]",
        'name = "Test Papers"',
        'from_address = "papers@example.org"',
        'base_url = "https://papers.example.org"',
        'database_url = "sqlite:///papers.db"',
        "",
        "[fetch]",
        "per_host_delay_seconds = 0",
        "timeout_seconds = 5",
        "max_retries = 0",
        extra,
    ]
    for name, kind, url in sources:
        lines += ["[[sources]]", f'name = "{name}"', f'kind = "{kind}"', f'url = "{url}"', ""]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + topics, encoding="utf-8")
    return path


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """The shipped offline example, with its database moved into the test's folder."""
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text = text.replace('database_url = "sqlite:///offline.db"', 'database_url = "sqlite:///offline.db"')
    path = tmp_path / "offline.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


@pytest.fixture
def store(tmp_path: Path) -> PaperStore:
    return PaperStore(open_database(f"sqlite:///{tmp_path / 'store.db'}"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The machine's PostgreSQL server; fails (never skips) when it is not reachable."""
    server = PostgresServer(admin_url())
    server.check()
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def postgres_session_url(postgres: PostgresServer) -> str:
    """One migrated scratch database for the whole run (dropped at its end); tests empty it before use."""
    return migrated(postgres.create())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store's URL, once on SQLite and once on the real PostgreSQL server (emptied for this test).

    It is also put into NEWSLETTER_DATABASE_URL, which overrides the config file: settings loaded by the
    test, and processes it starts, use the same database.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_session_url")
        empty_tables(url)
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    return url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """The delivery ledger on SQLite and on the PostgreSQL server: a test using it runs on both."""
    engine = open_database(database_url)
    yield Ledger(engine, worker="test")
    engine.dispose()


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same kind as ``database_url`` with nothing in it, not even the schema."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    url = postgres.create()
    yield url
    postgres.drop(url)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite the golden files in tests/golden/ from the current output (then review the diff).",
    )


_CHILDREN: list[subprocess.Popen[bytes]] = []


def spawn(arguments: list[str]) -> subprocess.Popen[bytes]:
    """Start a `newsletter` subprocess that is killed after the test even if the test fails."""
    process = subprocess.Popen([sys.executable, "-m", "newsletter", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=dict(os.environ))
    _CHILDREN.append(process)
    return process


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    yield
    while _CHILDREN:
        process = _CHILDREN.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A DKIM signing key (openssl, 2048 bits) and its DNS TXT record, made once per module."""
    return dkim_key_pair(tmp_path_factory.mktemp("dkim"))


@pytest.fixture
def sink() -> Iterator[MailSink]:
    """A local SMTP relay on 127.0.0.1 (``tests/mailsink.py``) for one test; a module may define its own."""
    with MailSink() as server:
        yield server
