"""`newsletter status` about the scheduler: whether a `serve` holds the lease (host, pid, since), next runs
only then, and repeated no-op runs shown once."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.storage.db import open_database
from newsletter.storage.runs import RunStore
from tests.mailsink import MailSink
from tests.support import secret_fixture
from tests.test_scheduler import NO_JOBS, _serve, _stop, far_daily, schedule_config
from tests.test_send import SECRET

secret = secret_fixture(SECRET)


def status(config: Path) -> tuple[str, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = CliRunner().invoke(cli, ["--config", str(config), "status"], catch_exceptions=False).output
    return text, json.loads(result.output[result.output.index("{"):])


@pytest.mark.slow
def test_status_says_whether_serve_runs_and_shows_next_runs_only_then(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink, NO_JOBS.replace('daily = ""', f'daily = "{far_daily()}"'))
    text, view = status(config)
    assert view["scheduler"]["running"] is False
    assert view["schedule"] == {}
    assert "serve: not running" in text
    assert "next runs" not in text
    process = _serve(config)
    deadline = time.monotonic() + 60
    while not view["scheduler"]["running"]:
        assert time.monotonic() < deadline, "serve never took the lease"
        assert process.poll() is None, process.communicate()[0].decode()
        time.sleep(0.3)
        text, view = status(config)
    scheduler = view["scheduler"]
    assert (scheduler["host"], scheduler["pid"]) == (socket.gethostname(), process.pid)
    since = datetime.fromisoformat(scheduler["since"])
    assert abs(datetime.now(UTC) - since) < timedelta(seconds=60)
    assert set(view["schedule"]) == {"daily"}
    assert f"serve: running on {socket.gethostname()}, pid {process.pid}, since {scheduler['since']}" in text
    assert "next runs: daily " in text
    assert _stop(process)[0] == 0
    text, view = status(config)
    assert (view["scheduler"]["running"], view["schedule"]) == (False, {})


def test_repeated_no_op_runs_are_shown_once(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink, NO_JOBS)
    runs = RunStore(open_database(load_settings(config).newsletter.database_url))
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    runs.record("fetch", now=start, worker="h:1", status="ok", summary="3 sources, 12 new papers")
    for minute in range(1, 9):
        runs.record("retry", now=start + timedelta(minutes=5 * minute), worker="h:1", status="ok",
                    summary="no deferred deliveries are due")
    text, view = status(config)
    assert [(r["job"], r["repeated"]) for r in view["runs"]] == [("retry", 8), ("fetch", 1)]
    retry = view["runs"][0]
    assert (retry["started"], retry["first_started"]) == ("2026-06-01T08:40:00+00:00", "2026-06-01T08:05:00+00:00")
    assert text.count("no deferred deliveries are due") == 1
    assert "no deferred deliveries are due (8 times since 2026-06-01T08:05:00+00:00)" in text
