"""Issue 26: what a month in the field broke around a finished ledger — each found fault, reproduced with
real processes (`serve` as a subprocess, SIGKILL), a real SQLite file and a real SMTP sink on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.service.scheduler import Service
from newsletter.storage.db import open_database
from tests.mailsink import MailSink
from tests.test_scheduler import NO_JOBS, _move_next_run, _run_until, _serve, _started, far_daily, schedule_config
from tests.test_send import SECRET, add_subscribers


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def _sqlite_path(config: Path) -> Path:
    url = load_settings(config).newsletter.database_url
    return Path(url.removeprefix("sqlite:///"))


def _status(config: Path) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def _kill_during_fill(process: object, database: Path, readers: int, timeout: float = 60) -> int:
    """SIGKILL `serve` once its fill wrote some ledger rows but not all; returns the rows written.

    The test takes SQLite's write lock between looks, so `serve` writes at most one transaction (one variant)
    per look, and is killed while it waits for the lock: the kill lands inside the fill, every time.
    """
    import subprocess

    assert isinstance(process, subprocess.Popen)
    deadline = time.monotonic() + timeout
    connection = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        while True:
            assert time.monotonic() < deadline, "the fill never started"
            assert process.poll() is None, process.communicate()[0].decode()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                time.sleep(0.001)
                continue
            try:
                rows = connection.execute("SELECT count(*) FROM deliveries").fetchone()[0]
            except sqlite3.OperationalError:  # the tables are not there yet
                rows = 0
            if 0 < rows < readers:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                connection.execute("ROLLBACK")
                return int(rows)
            assert rows == 0, f"the fill finished before the kill ({rows} rows)"
            connection.execute("ROLLBACK")
            time.sleep(0.002)
    finally:
        connection.close()


@pytest.mark.slow
def test_serve_killed_during_the_fill_completes_it_on_restart_and_status_says_unfinished_meanwhile(
        tmp_path: Path, sink: MailSink) -> None:
    """Item 1: killed mid-fill, the restarted `serve` used to send the few rows written and nothing else."""
    schedule = NO_JOBS.replace('daily = ""', f'daily = "{far_daily()}"').replace(
        'retry = ""', f'retry = "{far_daily()}"')
    config = schedule_config(tmp_path, sink, schedule)
    assert CliRunner().invoke(cli, ["--config", str(config), "fetch"]).exit_code == 0
    emails = add_subscribers(config, 40)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    first = Service(settings, engine)
    asyncio_run_until_started(first)  # stores the jobs; nothing is due
    _move_next_run(config, "daily", datetime.now(UTC) - timedelta(minutes=1))
    engine.dispose()
    process = _serve(config)
    written = _kill_during_fill(process, _sqlite_path(config), len(emails))
    assert sink.messages == []  # killed before any message went out
    view = _status(config)
    edition = view["editions"][0]
    assert edition["unfinished"] is True
    assert edition["fill_finished"] is False
    assert edition["not_in_ledger"] == len(emails) - written
    assert view["attention"]["not_in_ledger"] == len(emails) - written
    restarted = _serve(config)  # daily is not due again: only the retry run at start can finish it
    deadline = time.monotonic() + 90
    while len(sink.messages) < len(emails):
        assert time.monotonic() < deadline, (len(sink.messages), written)
        assert restarted.poll() is None
        time.sleep(0.1)
    time.sleep(1)
    restarted.send_signal(signal.SIGTERM)
    output = restarted.communicate(timeout=60)[0].decode()
    assert restarted.returncode == 0, output
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    edition = _status(config)["editions"][0]
    assert (edition["unfinished"], edition["fill_finished"], edition["not_in_ledger"]) == (False, True, 0)
    assert edition["deliveries"]["sent"] == len(emails)


def asyncio_run_until_started(service: Service) -> None:
    import asyncio

    asyncio.run(_run_until(service, lambda: _started(service)))
