"""`newsletter serve`: schedules, missed runs, the lease, clean stops — against a real SMTP server."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.service.scheduler import Service
from newsletter.service.triggers import cron_trigger
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from newsletter.storage.runs import Lease, RunStore
from tests.conftest import spawn
from tests.mailsink import MailSink
from tests.support import free_port, secret_fixture
from tests.test_send import SECRET, add_subscribers, make_config

NO_JOBS = 'fetch = ""\ndaily = ""\nweekly = ""\nretry = ""\nhousekeeping = ""\n'


secret = secret_fixture(SECRET)


def far_daily() -> str:
    """A daily schedule 12 hours from now: no real fire time falls inside what a test simulates."""
    return f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"


def schedule_config(folder: Path, sink: MailSink, schedule: str) -> Path:
    path = make_config(folder, sink)
    text = path.read_text(encoding="utf-8").replace("\nport = 8000\n", f"\nport = {free_port()}\n")
    path.write_text(text + f"\n[schedule]\n{schedule}\n", encoding="utf-8")
    return path


def second_config(config: Path) -> Path:
    """The same database and schedule, its own web port: a standby `serve`."""
    port = load_settings(config).web.port
    standby = config.with_name("standby.toml")
    standby.write_text(config.read_text(encoding="utf-8").replace(f"\nport = {port}\n", f"\nport = {free_port()}\n"),
                       encoding="utf-8")
    return standby


def test_a_weekday_schedule_fires_once_per_weekday_in_the_newsletter_time_zone() -> None:
    trigger = cron_trigger("0 7 * * mon-fri", "Europe/Berlin")
    fire, fires = None, []
    start = datetime(2026, 10, 19, tzinfo=UTC)  # a Monday; the week after spans the end of summer time
    now = start
    while True:
        fire = trigger.get_next_fire_time(fire, now)
        if fire >= start + timedelta(days=14):
            break
        fires.append(fire)
        now = fire
    assert len(fires) == 10
    assert len({f.date() for f in fires}) == 10
    assert all(f.hour == 7 and f.minute == 0 and f.weekday() < 5 for f in fires)
    assert {f.utcoffset() for f in fires} == {timedelta(hours=2), timedelta(hours=1)}


def test_an_invalid_schedule_is_a_config_error_naming_the_key(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink, 'daily = "0 7 * * 1-5"')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value) == (
        f"{config}: schedule.daily: expected day names in the day-of-week field (mon-fri, sat,sun): "
        "cron dialects disagree on day numbers, found '0 7 * * 1-5'"
    )
    config = schedule_config(tmp_path, sink, 'fetch = "every hour"')
    with pytest.raises(ConfigError, match=r"schedule\.fetch: expected a cron expression such as '0 7 \* \* mon-fri'"):
        load_settings(config)


async def _run_until(service: Service, done: Callable[[], bool], timeout: float = 30) -> None:
    task = asyncio.create_task(service.run())
    deadline = time.monotonic() + timeout
    while not done():
        assert not task.done(), task.exception() if task.done() else None
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    service.request_stop()
    await asyncio.wait_for(task, timeout=30)


def _started(service: Service) -> bool:
    return service.scheduler is not None and service.scheduler.running


def _move_next_run(config: Path, job: str, when: datetime) -> None:
    """Simulate an outage: the stored job's next run is in the past, as if `serve` had been down then."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    engine = open_database(load_settings(config).newsletter.database_url)
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    store.start(BackgroundScheduler(), "default")  # the store alone: no scheduler may run the job now
    stored = store.lookup_job(job)
    stored._modify(next_run_time=when)
    store.update_job(stored)


def _finished_runs(config: Path, job: str) -> list[str]:
    engine = open_database(load_settings(config).newsletter.database_url)
    return [r.status for r in RunStore(engine).recent(job=job) if r.finished is not None]


@pytest.mark.usefixtures("database_url")  # the run log, the lease and the job store on SQLite and PostgreSQL
def test_a_run_missed_during_an_outage_runs_once_on_restart(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink, NO_JOBS.replace('daily = ""', f'daily = "{far_daily()}"'))
    assert CliRunner().invoke(cli, ["--config", str(config), "fetch"]).exit_code == 0
    emails = add_subscribers(config, 6)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    first = Service(settings, engine)
    asyncio.run(_run_until(first, lambda: _started(first)))  # stores the job; nothing is due
    assert sink.messages == []
    _move_next_run(config, "daily", datetime.now(UTC) - timedelta(minutes=10))  # down over the 07:00 run
    second = Service(settings, engine)
    asyncio.run(_run_until(second, lambda: _finished_runs(config, "daily") != []))
    assert _finished_runs(config, "daily") == ["ok"]
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    third = Service(settings, engine)  # the next restart finds nothing due
    asyncio.run(_run_until(third, lambda: _started(third)))
    assert _finished_runs(config, "daily") == ["ok"]
    assert len(sink.messages) == 6


@pytest.mark.usefixtures("database_url")  # the run log, the lease and the job store on SQLite and PostgreSQL
def test_a_run_missed_by_more_than_the_grace_time_is_recorded_as_skipped(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink,
                             NO_JOBS.replace('daily = ""', f'daily = "{far_daily()}"') + "misfire_grace_seconds = 600")
    CliRunner().invoke(cli, ["--config", str(config), "fetch"])
    add_subscribers(config, 2)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    first = Service(settings, engine)
    asyncio.run(_run_until(first, lambda: _started(first)))
    _move_next_run(config, "daily", datetime.now(UTC) - timedelta(hours=2))
    second = Service(settings, engine)
    asyncio.run(_run_until(second, lambda: _finished_runs(config, "daily") != []))
    runs = RunStore(engine).recent(job="daily")
    assert [r.status for r in runs] == ["skipped"]
    assert "missed by more than misfire_grace_seconds (600 s)" in runs[0].summary
    assert sink.messages == []


@pytest.mark.slow  # two `serve` processes
@pytest.mark.usefixtures("database_url")  # the run log, the lease and the job store on SQLite and PostgreSQL
def test_a_second_service_waits_for_the_lease(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink, NO_JOBS + "lease_seconds = 30")
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    other = Lease(engine, "scheduler", holder="elsewhere:1", duration=timedelta(seconds=30))
    assert other.acquire(now=datetime.now(UTC))

    async def main() -> None:
        service = Service(settings, engine)
        task = asyncio.create_task(service.run())
        await asyncio.sleep(1.0)
        assert service.scheduler is None  # still waiting
        other.release()
        deadline = time.monotonic() + 20
        while not _started(service):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        service.request_stop()
        await task

    asyncio.run(main())


def _serve(config: Path) -> subprocess.Popen[bytes]:
    return spawn(["--config", str(config), "serve"])


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    return process.returncode, output


@pytest.mark.slow
def test_two_serve_processes_send_one_edition_once_and_status_reports_it(tmp_path: Path, sink: MailSink) -> None:
    schedule = NO_JOBS.replace('daily = ""', 'daily = "*/2 * * * * *"') + "lease_seconds = 5"
    config = schedule_config(tmp_path, sink, schedule)
    standby = second_config(config)
    assert CliRunner().invoke(cli, ["--config", str(config), "fetch"]).exit_code == 0
    emails = add_subscribers(config, 10)
    processes = [_serve(config), _serve(standby)]
    deadline = time.monotonic() + 60
    while len(sink.messages) < 10:
        assert time.monotonic() < deadline, [p.poll() for p in processes]
        time.sleep(0.1)
    for path in (config, standby):  # both serve the web pages, whichever runs the jobs
        health = httpx.get(f"http://127.0.0.1:{load_settings(path).web.port}/healthz", timeout=5)
        assert health.status_code == 200
    time.sleep(3)  # more scheduled runs come and go: the edition exists, the ledger is complete
    results = [_stop(p) for p in processes]
    assert [code for code, _ in results] == [0, 0], results
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    today = view["editions"][0]
    assert len(view["editions"]) == 1
    assert today["deliveries"]["sent"] == 10
    assert view["subscribers"]["active"] == 10
    assert view["schedule"] == {}  # both `serve` stopped: nothing is scheduled any more
    assert view["scheduler"]["running"] is False
    daily_runs = [r for r in view["runs"] if r["job"] == "daily"]
    assert daily_runs
    assert any("10 sent" in r["summary"] for r in daily_runs)
    assert {s["name"] for s in view["sources"]} >= {"arxiv-cs-ai", "hf-daily"}


@pytest.mark.slow
def test_sigterm_during_a_scheduled_send_loses_and_duplicates_nothing(tmp_path: Path, sink: MailSink) -> None:
    schedule = NO_JOBS.replace('daily = ""', 'daily = "*/1 * * * * *"')
    config = schedule_config(tmp_path, sink, schedule)
    config.write_text(config.read_text().replace("concurrency = 4", "concurrency = 2\nclaim_batch = 20"))
    assert CliRunner().invoke(cli, ["--config", str(config), "fetch"]).exit_code == 0
    emails = add_subscribers(config, 120)
    sink.reply_delay = 0.02
    process = _serve(config)
    deadline = time.monotonic() + 60
    while len(sink.messages) < 15:
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.01)
    code, output = _stop(process)
    assert code == 0, output
    ledger = Ledger(open_database(load_settings(config).newsletter.database_url))
    counts = ledger.counts(1)
    assert counts["claimed"] == 0
    assert counts["ambiguous"] == 0
    assert counts["sent"] < 120
    assert counts["sent"] + counts["pending"] == 120
    sink.reply_delay = 0
    assert CliRunner().invoke(cli, ["--config", str(config), "send"]).exit_code == 0
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)


@pytest.mark.slow
def test_serve_exits_with_an_error_when_its_web_port_is_taken(tmp_path: Path, sink: MailSink) -> None:
    config = schedule_config(tmp_path, sink, NO_JOBS)
    port = load_settings(config).web.port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        process = _serve(config)
        output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 1, output
    assert "Error: the web server stopped" in output


def test_a_changed_time_zone_or_grace_replaces_the_stored_jobs(tmp_path: Path, sink: MailSink) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    config = schedule_config(tmp_path, sink, NO_JOBS.replace('daily = ""', 'daily = "0 7 * * *"'))
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    first = Service(settings, engine)
    asyncio.run(_run_until(first, lambda: _started(first)))
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('timezone = "UTC"', 'timezone = "Asia/Tokyo"', 1)
                      .replace("[schedule]\n", "[schedule]\nmisfire_grace_seconds = 123\n", 1), encoding="utf-8")
    changed = load_settings(config)
    second = Service(changed, engine)
    asyncio.run(_run_until(second, lambda: _started(second)))
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    store.start(BackgroundScheduler(), "default")
    stored = store.lookup_job("daily")
    assert str(stored.trigger.timezone) == "Asia/Tokyo"
    assert stored.misfire_grace_time == 123
    assert stored.next_run_time.utcoffset() == timedelta(hours=9)
