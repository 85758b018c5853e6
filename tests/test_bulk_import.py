"""Issue 30: `subscribers import` / `export` in bulk — a few statements per chunk instead of several per row, every
row checked once, the same report, consent records kept over thousands of rows, a progress bar only on a terminal.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import DATABASE_URL_ENV, load_settings
from newsletter.storage.db import open_database
from subscribers import bulk_store
from subscribers.addresses import full_valid_email, valid_email
from subscribers.csvio import import_csv
from subscribers.errors import InvalidAddressError
from subscribers.evidence import EvidenceStore
from subscribers.store import SubscriberStore
from tests.conftest import write_config
from tests.support import subscriber_snapshot

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ROWS = 2 * bulk_store.CHUNK + 500  # three chunks, the last one short


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


def _store(config: Path) -> SubscriberStore:
    return SubscriberStore(open_database(load_settings(config).newsletter.database_url),
                           topics=["agents", "reasoning", "medical"])


def _plain_csv(path: Path, rows: int) -> Path:
    lines = ["email,name,topics,frequency"]
    lines += [f"reader{n}@example{n % 7}.org,Reader {n},{'agents;medical' if n % 2 else 'reasoning'},"
              f"{'weekly' if n % 3 == 0 else 'daily'}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])


def test_an_import_of_thousands_of_rows_runs_a_few_statements_per_chunk_not_per_row(
        config: Path, tmp_path: Path) -> None:
    store = _store(config)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    data = _plain_csv(tmp_path / "list.csv", ROWS).read_bytes()
    report = import_csv(store, data, now=T0)
    assert (len(report.added), len(report.errors)) == (ROWS, 0)
    assert len(statements) <= 6 * 3, statements[:10]  # per chunk: 2 look-ups, 1 insert, 1 id query (+ begin)
    statements.clear()
    again = import_csv(store, data, now=T0 + timedelta(hours=1))
    assert (len(again.unchanged), len(again.added), len(again.updated)) == (ROWS, 0, 0)
    assert len(statements) <= 3 * 3
    stored = store.get_by_email("reader1@example1.org")
    assert stored is not None
    assert report.added[1] == stored
    assert (stored.name, stored.topics, stored.frequency, stored.status) == (
        "Reader 1", ("agents", "medical"), "daily", "active")


def test_bad_lines_in_every_chunk_are_reported_by_line_as_before_and_the_rest_imported(
        config: Path, tmp_path: Path) -> None:
    store = _store(config)
    store.add("gone@example.org", now=T0)
    store.unsubscribe(store.require("gone@example.org").id, now=T0)
    path = _plain_csv(tmp_path / "list.csv", ROWS)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[10] = "not-an-address,Bad,agents,daily"
    lines[1500] = "x@example.org,Bad,nosuchtopic,hourly"
    lines[2400] = "gone@example.org,Gone,agents,daily"  # suppressed: refused in the third chunk
    lines.append(lines[5])  # a duplicate of line 6
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, output = _run(config, "subscribers", "import", str(path))
    assert code == 1
    assert f"{ROWS + 1} rows: {ROWS - 3} added, 0 updated, 0 unchanged, 4 not imported" in output
    reported = [line for line in output.splitlines() if line.startswith("line ")]
    assert reported == [
        "line 11: not a valid email address: 'not-an-address' (an email address must have an @-sign)",
        "line 1501: unknown topic 'nosuchtopic'; valid topics: agents, reasoning, medical; unknown frequency "
        "'hourly'; expected one of: daily, weekly",
        "line 2401: gone@example.org is suppressed (unsubscribed); not imported (use --force to import it anyway)",
        f"line {ROWS + 2}: duplicate of line 6 (reader4@example4.org)",
    ]
    assert store.require("gone@example.org").status == "unsubscribed"
    assert store.counts_by_status()["active"] == ROWS - 3


def test_a_dry_run_over_several_chunks_changes_nothing(config: Path, tmp_path: Path) -> None:
    store = _store(config)
    code, output = _run(config, "subscribers", "import", str(_plain_csv(tmp_path / "l.csv", ROWS)), "--dry-run")
    assert code == 0, output
    assert f"dry run, nothing changed: {ROWS} rows: {ROWS} added" in output
    assert store.counts_by_status()["active"] == 0


def _history(store: SubscriberStore) -> None:
    """Thousands of readers in every state: confirmed web sign-ups, unconfirmed ones, operator adds, readers who
    left, bounces with their evidence."""
    rows = [{"email": f"r{n}@example{n % 5}.org", "name": f"R {n}", "status": "active", "topics": ["agents"],
             "frequency": "daily", "source": "web", "consent_at": T0 + timedelta(seconds=n),
             "consent_ip": f"198.51.100.{n % 250}", "confirmed_at": T0 + timedelta(seconds=n, minutes=5),
             "confirmed_ip": "203.0.113.9", "created": T0 + timedelta(seconds=n), "updated": T0}
            for n in range(ROWS)]
    from subscribers.schema import subscribers

    with store.engine.begin() as connection:
        connection.execute(subscribers.insert(), rows)
    for n in range(0, ROWS, 7):
        store.unsubscribe(store.require(f"r{n}@example{n % 5}.org").id, now=T0 + timedelta(days=1, seconds=n))
    for n in range(3, ROWS, 101):
        reader = store.require(f"r{n}@example{n % 5}.org")
        with store.engine.begin() as connection:
            EvidenceStore(store.engine).apply(connection, subscriber_id=reader.id, kind="hard-bounce",
                                              now=T0 + timedelta(days=2), status="5.1.1",
                                              diagnostic=f"smtp; 550 5.1.1 no such user {n}",
                                              message_id=f"<m{n}@example.org>")
    for n in range(5, ROWS, 211):
        store.subscribe(f"pending{n}@example.org", topics=["medical"], frequency="weekly", ip="192.0.2.7",
                        now=T0 + timedelta(days=3))


def _snapshot(store: SubscriberStore) -> dict[str, tuple[object, ...]]:
    return subscriber_snapshot(store)


@pytest.fixture
def two_databases(database_url: str, empty_database_url: str) -> tuple[str, str]:
    return database_url, empty_database_url


def test_export_then_import_of_thousands_of_readers_keeps_every_consent_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_databases: tuple[str, str]) -> None:
    source_url, target_url = two_databases
    config = write_config(tmp_path, [("feed", "arxiv-rss", "feed.xml")])
    source = _store(config)
    _history(source)
    before = _snapshot(source)
    assert {v[0] for v in before.values()} == {"active", "unsubscribed", "bounced", "pending"}
    export = tmp_path / "list.csv"
    code, output = _run(config, "subscribers", "export", str(export))
    assert code == 0, output
    assert export.read_text(encoding="utf-8").count("\n") == len(before) + 1
    monkeypatch.setenv(DATABASE_URL_ENV, target_url)
    code, output = _run(config, "subscribers", "import", str(export))
    assert code == 0, output
    assert f"{len(before)} rows: {len(before)} added, 0 updated, 0 unchanged, 0 not imported" in output
    assert _snapshot(_store(config)) == before
    code, output = _run(config, "subscribers", "import", str(export))  # and again: nothing changes
    assert f"{len(before)} rows: 0 added, 0 updated, {len(before)} unchanged" in output
    assert _snapshot(_store(config)) == before
    monkeypatch.setenv(DATABASE_URL_ENV, source_url)


TRICKY = [
    "a@b.com", "A.B@Example.COM", "x@localhost", "x@foo.test", "x@foo.invalid", "x@[1.2.3.4]", "x@münchen.de",
    "x@xn--mnchen-3ya.de", "POSTMASTER@example.org", "a..b@x.org", ".a@x.org", "a.@x.org", "a@x..org", "a@-x.org",
    "a@x-.org", "a@x.123", "a@123.45.6.7", '"quoted"@x.org', "a b@x.org", "Name <a@x.org>", "a@x.org>", "a@@x.org",
    "@x.org", "a@", "a@x", "ü@x.org", "a@x.org.", "a@.x.org", "a" * 65 + "@x.org", "a" * 64 + "@" + "b" * 63 + ".org",
    "a@" + ("b" * 63 + ".") * 4 + "org", "a@" + "b" * 64 + ".org", "a@x_y.org", "a+tag@x.org", "a@exa mple.org",
    "a@ｘ.org", "a@x.ＯＲＧ", "a@x.onion", "a@x.local", "abc" * 20 + "@" + ("d" * 60 + ".") * 3 + "x.org",
    "a@" + ("b" * 60 + ".") * 3 + "b" * 30 + ".org", "a@x.org\u200b", "a\u00a0b@x.org", "a@xn--.org",
]


@pytest.mark.parametrize("address", TRICKY)
def test_the_cached_domain_check_gives_what_email_validator_gives_for_the_whole_address(address: str) -> None:
    def outcome(check: object) -> tuple[str, str]:
        try:
            return "valid", check(address) if check is valid_email else check(address.strip())  # type: ignore[operator]
        except InvalidAddressError as error:
            return "invalid", str(error)

    assert outcome(valid_email) == outcome(full_valid_email)
    assert outcome(valid_email) == outcome(valid_email)  # the second time from the cache


def _in_a_terminal(config: Path, *args: str) -> tuple[int, bytes, bytes]:
    """Run the real command with standard error on a pseudo-terminal; returns (exit code, stdout, stderr)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "COLUMNS": "100"}
    stdout = config.parent / "stdout.txt"
    with stdout.open("wb") as out:  # a file, not a pipe: nobody reads a pipe while the terminal is read
        process = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *args],
                                   stdout=out, stderr=terminal, env=env, cwd=config.parent)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        drawn += chunk
    process.wait(timeout=60)
    os.close(controller)
    return process.returncode, stdout.read_bytes(), drawn


def test_progress_is_drawn_on_a_terminal_s_standard_error_only_and_not_with_quiet(
        config: Path, tmp_path: Path) -> None:
    data = _plain_csv(tmp_path / "list.csv", ROWS)
    code, out, drawn = _in_a_terminal(config, "subscribers", "import", str(data))
    assert code == 0, drawn
    assert f"{ROWS}/{ROWS}".encode() in drawn
    assert b"Importing" in drawn
    assert b"Importing" not in out
    assert f"{ROWS} rows: {ROWS} added".encode() in out
    code, out, drawn = _in_a_terminal(config, "subscribers", "export")
    assert code == 0
    assert b"Exporting" in drawn
    assert out.count(b"\n") == ROWS + 1
    assert b"Exporting" not in out
    code, out, drawn = _in_a_terminal(config, "subscribers", "import", "--quiet", str(data))
    assert code == 0
    assert drawn == b""
    assert f"{ROWS} unchanged".encode() in out
    code, output = _run(config, "subscribers", "import", str(data))  # not a terminal: no bar either
    assert code == 0
    assert "Importing" not in output
