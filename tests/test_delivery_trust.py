"""Delivery an operator can trust: `send` against a real relay that refuses, a wrong password, a stalled
sender, a failing database. Real processes, real aiosmtpd relay with scripted replies, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import secrets
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.delivery.workers import Dispatcher
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from subscribers.store import SubscriberStore
from tests.conftest import spawn
from tests.databases import PostgresServer, scratch_redis
from tests.mailsink import Fault, MailSink
from tests.support import secret_fixture
from tests.test_send import SECRET, _wait_for, add_subscribers, cli_run, make_config
from tests.test_workers import add_subscribers as worker_subscribers
from tests.test_workers import start as start_worker
from tests.test_workers import stop as stop_worker
from tests.test_workers import wait_until_ready, worker_config

secret = secret_fixture(SECRET)


def ledger_of(config: Path) -> Ledger:
    return Ledger(open_database(load_settings(config).newsletter.database_url))


def statuses(config: Path) -> dict[str, int]:
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    return store.counts_by_status()


def copies(sink: MailSink) -> dict[str, int]:
    return {address: len(messages) for address, messages in sink.by_recipient().items()}


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
@pytest.mark.parametrize("reply", [
    "550 5.7.1 Relaying denied",
    "550 5.7.1 Service unavailable; client host [127.0.0.1] blocked using zen.spamhaus.org",
])
def test_a_relay_refusing_every_recipient_by_policy_bounces_no_one(tmp_path: Path, sink: MailSink,
                                                                   reply: str) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 8)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply=reply, times=None))
    code, output = cli_run(config, "send")
    assert code == 1, output
    assert f"Error: delivery stopped: {reply} (relay 127.0.0.1:{sink.port}" in output
    assert statuses(config).get("bounced", 0) == 0
    counts = ledger_of(config).counts(1)
    assert (counts["failed"], counts["sent"], counts["claimed"], counts["pending"]) == (0, 0, 0, 8)
    sink.clear_faults()
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert copies(sink) == dict.fromkeys(emails, 1)


@pytest.mark.usefixtures("database_url")
def test_a_wrong_password_fails_no_row_and_the_right_one_delivers_each_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MailSink(auth=("relay-user", "right")) as sink:
        config = make_config(tmp_path, sink, extra='username = "relay-user"')
        assert cli_run(config, "fetch")[0] == 0
        emails = add_subscribers(config, 6)
        monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong")
        code, output = cli_run(config, "send")
        assert code == 1, output
        assert "Error: delivery stopped: 535 5.7.8 Authentication credentials invalid" in output
        assert f"relay 127.0.0.1:{sink.port}" in output
        counts = ledger_of(config).counts(1)
        assert (counts["failed"], counts["pending"], counts["claimed"]) == (0, 6, 0)
        monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "right")
        code, output = cli_run(config, "send")
        assert code == 0, output
        assert copies(sink) == dict.fromkeys(emails, 1)


@pytest.mark.parametrize(("fault", "quoted"), [
    (Fault(phase="connect", action="reply", reply="554 5.3.2 No SMTP service here", times=None),
     "554 5.3.2 No SMTP service"),
    (Fault(phase="mail", action="reply", reply="553 5.7.1 Sender address rejected", times=None),
     "553 5.7.1 Sender address rejected"),
])
def test_session_errors_stop_the_run_and_leave_every_row_retriable(tmp_path: Path, sink: MailSink, fault: Fault,
                                                                   quoted: str) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 5)
    sink.add_fault(fault)
    code, output = cli_run(config, "send")
    assert code == 1, output
    assert quoted in output
    assert "in reply to the session" in output
    counts = ledger_of(config).counts(1)
    assert (counts["failed"], counts["pending"]) == (0, 5)
    sink.clear_faults()
    assert cli_run(config, "send")[0] == 0
    assert copies(sink) == dict.fromkeys(emails, 1)


def test_an_unreachable_relay_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    with MailSink() as closed:
        config = make_config(tmp_path, closed)
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 4)
    code, output = cli_run(config, "send")
    assert code == 1, output
    assert f"cannot open a session with the relay 127.0.0.1:{closed.port}: SMTPConnectError" in output
    assert ledger_of(config).counts(1)["pending"] == 4


def test_deferrals_exit_3_and_the_summary_groups_them_by_reply(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 6)
    for address in emails[:4]:
        sink.add_fault(Fault(phase="rcpt", action="reply", reply="451 4.7.0 Try again later", recipient=address))
    code, output = cli_run(config, "send")
    assert code == 3, output
    assert f"4 deferred: 451 4.7.0 Try again later (relay 127.0.0.1:{sink.port})" in output
    assert "Error: 4 messages deferred by the relay" in output


def test_a_mailbox_full_is_a_counted_soft_bounce_and_a_disabled_one_bounces(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 4)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="552 5.2.2 Mailbox full", recipient=emails[0]))
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="550 5.2.1 Mailbox disabled", recipient=emails[1]))
    code, output = cli_run(config, "send")
    assert code == 0, output  # both are the readers' own: the run did its job
    counts = ledger_of(config).counts(1)
    assert (counts["sent"], counts["deferred"], counts["failed"]) == (2, 1, 1)
    assert statuses(config)["bounced"] == 1
    assert ledger_of(config).rows(1, state="deferred")[0]["email"] == emails[0]


def test_the_same_refusal_for_n_recipients_in_a_row_trips_the_breaker(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="breaker_threshold = 3")
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 12)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="554 Transaction failed", times=None))
    code, output = cli_run(config, "send")
    assert code == 1, output
    assert "3 recipients in a row refused with 554 Transaction failed" in output
    counts = ledger_of(config).counts(1)
    assert 3 <= counts["failed"] <= 3 + 3  # the three in a row, and at most the other connections' in flight
    assert counts["pending"] == 12 - counts["failed"]
    assert statuses(config).get("bounced", 0) == 0


def test_a_malformed_reply_after_the_content_is_ambiguous(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 3)
    sink.add_fault(Fault(phase="dot", action="reply", reply="250-Queued\r\nas what?", recipient=emails[1]))
    cli_run(config, "send")
    ledger = ledger_of(config)
    assert [r["email"] for r in ledger.rows(1, state="ambiguous")] == [emails[1]]
    assert ledger.counts(1)["failed"] == 0


def _pause_outside_a_write(process: subprocess.Popen[bytes], url: str) -> None:
    """SIGSTOP (a VM pause): its claims lapse while it holds rows in memory.

    A writer paused inside a transaction holds its locks (SQLite's file lock, PostgreSQL's row locks) and
    every other sender must wait for it, so the pause is retried until it falls outside one.
    """
    for _ in range(50):
        process.send_signal(signal.SIGSTOP)
        if not url.startswith("sqlite"):
            with sa.create_engine(url, poolclass=sa.NullPool).connect() as connection:
                busy = connection.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state <> 'idle'")).scalar_one()
            if not busy:
                return
            process.send_signal(signal.SIGCONT)
            time.sleep(0.01)
            continue
        probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            process.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    pytest.fail("the sender was inside a write transaction at every pause")


@pytest.mark.slow
@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_a_sender_stalled_past_its_lease_sends_nothing_another_took_over(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="lease_seconds = 1\nclaim_batch = 60")
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 60)
    sink.reply_delay = 0.02
    first = spawn(["--config", str(config), "send"])
    _wait_for(sink, 5, first)
    _pause_outside_a_write(first, load_settings(config).newsletter.database_url)
    try:
        time.sleep(2.5)
        sink.reply_delay = 0
        second = spawn(["--config", str(config), "send"])
        output = second.communicate(timeout=120)[0].decode()
        assert second.returncode == 0, output
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=120)
    counts = copies(sink)
    assert all(n == 1 for n in counts.values()), {a: n for a, n in counts.items() if n > 1}
    ledger = ledger_of(config)
    ambiguous = {r["email"] for r in ledger.rows(1, state="ambiguous")}
    assert set(emails) - set(counts) <= ambiguous


@pytest.mark.slow  # two sending processes, one killed: 7-8 s each
@pytest.mark.usefixtures("database_url")
def test_an_immediate_resume_after_sigkill_takes_the_dead_senders_claims(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="claim_batch = 40")  # the default 300 s lease
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 80)
    sink.reply_delay = 0.01
    process = spawn(["--config", str(config), "send"])
    _wait_for(sink, 10, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    sink.reply_delay = 0
    code, output = cli_run(config, "send")
    assert code == 0, output
    ledger = ledger_of(config)
    counts = ledger.counts(1)
    assert (counts["pending"], counts["claimed"]) == (0, 0)
    received = copies(sink)
    assert all(n == 1 for n in received.values())
    assert set(emails) - set(received) <= {r["email"] for r in ledger.rows(1, state="ambiguous")}


@pytest.mark.slow
def test_a_database_that_turns_read_only_mid_send_ends_it_with_one_line(tmp_path: Path, sink: MailSink,
                                                                        postgres_session_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failover to a read-only replica: every ledger write fails. Today's writer died and `send` hung."""
    from tests.databases import empty_tables

    empty_tables(postgres_session_url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", postgres_session_url)
    config = make_config(tmp_path, sink, extra="claim_batch = 20")
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 60)
    sink.reply_delay = 0.02
    process = spawn(["--config", str(config), "send"])
    _wait_for(sink, 5, process)
    name = sa.make_url(postgres_session_url).database
    admin = sa.create_engine(postgres_session_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")

    def read_only(on: bool) -> None:
        with admin.connect() as connection:
            connection.execute(sa.text("SET default_transaction_read_only = off"))
            connection.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                                       f'{"on" if on else "off"}'))
            connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    read_only(True)
    try:
        output = process.communicate(timeout=60)[0].decode()
    finally:
        read_only(False)
    assert process.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert "delivery stopped: cannot " in errors[0]
    assert "Traceback" not in output
    sink.reply_delay = 0
    code, output = cli_run(config, "send")  # the same host: the dead sender's claims are free at once
    assert code == 0, output
    received = copies(sink)
    assert all(n == 1 for n in received.values())
    assert set(emails) - set(received) <= {r["email"] for r in ledger_of(config).rows(1, state="ambiguous")}


@pytest.mark.slow
def test_serve_killed_mid_send_finishes_the_edition_when_it_restarts(tmp_path: Path, sink: MailSink) -> None:
    from tests.test_scheduler import NO_JOBS, schedule_config

    sending = NO_JOBS.replace('daily = ""', 'daily = "*/1 * * * * *"') + "lease_seconds = 2"
    config = schedule_config(tmp_path, sink, sending)
    config.write_text(config.read_text().replace("concurrency = 4", "concurrency = 2\nclaim_batch = 20\n"
                                                 "unfinished_after_minutes = 0.001"))
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 100)
    sink.reply_delay = 0.02
    process = spawn(["--config", str(config), "serve"])
    _wait_for(sink, 10, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    code, output = cli_run(config, "status")
    assert code == 0, output
    assert "unfinished daily-" in output
    # The day's job has moved on: only the (rare) retry schedule is left, and serve finishes at start
    text = config.read_text()
    config.write_text(text.replace('daily = "*/1 * * * * *"', 'daily = ""').replace('retry = ""',
                                                                                    'retry = "0 0 1 1 *"'))
    sink.reply_delay = 0
    restarted = spawn(["--config", str(config), "serve"])
    ledger = ledger_of(config)
    deadline = time.monotonic() + 60
    while ledger.counts(1)["pending"] + ledger.counts(1)["claimed"]:
        assert time.monotonic() < deadline, ledger.counts(1)
        assert restarted.poll() is None
        time.sleep(0.2)
    restarted.send_signal(signal.SIGTERM)
    restarted.communicate(timeout=60)
    received = copies(sink)
    assert all(n == 1 for n in received.values()), received
    assert set(emails) - set(received) <= {r["email"] for r in ledger.rows(1, state="ambiguous")}
    code, output = cli_run(config, "status")
    assert "unfinished daily-" not in output
    runs = json.loads(cli_run(config, "status", "--json")[1])["runs"]
    assert "running" not in {r["status"] for r in runs}  # the killed serve's run is marked died
    assert "died" in {r["status"] for r in runs}


@pytest.mark.usefixtures("database_url")
def test_deliveries_retry_requeues_failed_rows_and_ambiguous_ones_only_when_asked(tmp_path: Path,
                                                                                  sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 4)
    sink.add_fault(Fault(phase="dot", action="reply", reply="554 5.6.0 Content rejected", recipient=emails[0]))
    sink.add_fault(Fault(phase="dot", action="drop", recipient=emails[1]))
    cli_run(config, "send")
    ledger = ledger_of(config)
    assert (ledger.counts(1)["failed"], ledger.counts(1)["ambiguous"]) == (1, 1)
    slug = json.loads(cli_run(config, "status", "--json")[1])["editions"][0]["slug"]
    code, output = cli_run(config, "deliveries", "retry", slug)
    assert code == 0, output
    assert f"re-queued 1 failed deliveries of {slug}" in output
    code, output = cli_run(config, "deliveries", "retry", slug, "--state", "ambiguous")
    assert code == 2
    assert "--include-ambiguous" in output
    assert cli_run(config, "send")[0] == 0
    assert copies(sink) == {emails[0]: 1, emails[1]: 1, emails[2]: 1, emails[3]: 1}
    code, output = cli_run(config, "deliveries", "retry", "daily-1999-01-01")
    assert code == 1
    assert "Error: no edition 'daily-1999-01-01'" in output


@pytest.mark.slow  # kombu retries the unreachable broker for a while
def test_a_broker_url_password_never_reaches_the_screen_or_the_runs_table(tmp_path: Path, sink: MailSink) -> None:
    from newsletter.config.redact import redact

    assert redact("cannot reach 'amqp://news:s3cr%40t@mq.example.org:5672//': refused") == (
        "cannot reach 'amqp://news:***@mq.example.org:5672//': refused")
    assert redact("postgresql+psycopg://app:pw@db/news and redis://:pw@127.0.0.1:1/0") == (
        "postgresql+psycopg://app:***@db/news and redis://:***@127.0.0.1:1/0")
    config = make_config(tmp_path, sink)
    config.write_text(config.read_text() + '\n[workers]\nbroker = "redis://:hunter2@127.0.0.1:1/0"\n')
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 2)
    code, output = cli_run(config, "send", "--workers", "--no-wait")
    assert code == 1, output
    assert "cannot reach the broker 'redis://:***@127.0.0.1:1/0'" in output
    assert "hunter2" not in output


@pytest.mark.slow
def test_a_sqlite_lock_held_past_busy_timeout_ends_send_with_one_line(tmp_path: Path, sink: MailSink) -> None:
    busy_timeout = 30  # newsletter.storage.db sets PRAGMA busy_timeout=30000
    config = make_config(tmp_path, sink, extra="claim_batch = 20")
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 60)
    sink.reply_delay = 0.02
    process = spawn(["--config", str(config), "send"])
    _wait_for(sink, 5, process)
    path = load_settings(config).newsletter.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, timeout=10)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock for twice busy_timeout
    locked_at = time.monotonic()
    try:
        output = process.communicate(timeout=busy_timeout + 30)[0].decode()
        assert time.monotonic() - locked_at < busy_timeout + 30
        time.sleep(max(0.0, 2 * busy_timeout - (time.monotonic() - locked_at)))
    finally:
        holder.rollback()
        holder.close()
    assert process.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    # The writer's commit and the next claim both wait for the lock, each in its own thread (never on the event
    # loop): whichever reaches busy_timeout first stops the run.
    stopped = r"Error: delivery stopped: cannot (write|use) the delivery ledger: database is locked;"
    assert re.match(stopped, errors[0]), errors[0]
    assert "Traceback" not in output
    sink.reply_delay = 0
    code, output = cli_run(config, "send")
    assert code == 0, output
    received = copies(sink)
    assert all(n == 1 for n in received.values())
    assert set(emails) - set(received) <= {r["email"] for r in ledger_of(config).rows(1, state="ambiguous")}


@pytest.mark.usefixtures("database_url")
def test_erasure_leaves_the_address_in_no_ledger_row(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 3)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply=f"452 4.2.2 <{emails[0]}> over quota", times=None,
                         recipient=emails[0]))
    assert cli_run(config, "send", "--limit", "2")[0] == 0
    ledger = ledger_of(config)
    claimed = ledger.claim(1, limit=5, now=datetime.now(UTC), lease=timedelta(minutes=5))
    assert claimed  # a row claimed by a sender right now
    for address in (emails[0], claimed[0].email):
        code, output = cli_run(config, "subscribers", "remove", address, "--delete")
        assert code == 0, output
    with ledger.engine.connect() as connection:
        rows = [dict(r) for r in connection.execute(sa.text("SELECT * FROM deliveries")).mappings()]
    for address in (emails[0], claimed[0].email):
        assert not [r for r in rows if any(address in str(v) for v in r.values())], rows


@pytest.mark.slow
@pytest.mark.needs("celery", "redis")
def test_a_celery_worker_stalled_past_its_lease_sends_nothing_the_other_took_over(tmp_path: Path, sink: MailSink,
                                                                                   postgres: PostgresServer) -> None:
    """The issue's second case: PostgreSQL and two `newsletter worker` processes, one SIGSTOPped past its
    lease while `send --workers` hands its rows to the other, then SIGCONT: no reader gets two copies."""
    url = postgres.create()
    try:
        with scratch_redis() as broker:
            config = worker_config(tmp_path, sink, database_url=url, broker=broker,
                                   queue=f"nl-test-{secrets.token_hex(4)}")
            assert cli_run(config, "fetch")[0] == 0
            emails = worker_subscribers(config, 300)
            sink.reply_delay = 0.02
            logs = [tmp_path / f"worker{n}.log" for n in range(2)]
            workers = [start_worker(config, "worker", log=log) for log in logs]
            send = None
            try:
                for worker, log in zip(workers, logs, strict=True):
                    wait_until_ready(worker, log)
                send = start_worker(config, "send", "--workers", log=tmp_path / "send.log")
                _wait_for(sink, 40, send)
                _pause_outside_a_write(workers[0], url)
                try:
                    time.sleep(2 * 2 + 1)  # past its 2 s lease and the dispatcher's settle time
                    sink.reply_delay = 0
                    # 4: the stalled worker's messages in DATA were left ambiguous (exit 4 says so)
                    assert send.wait(timeout=120) in (0, 4), (tmp_path / "send.log").read_text()
                finally:
                    workers[0].send_signal(signal.SIGCONT)
                time.sleep(3)  # the paused worker goes on with the rows it holds in memory
            finally:
                for process in [*workers, *([send] if send else [])]:
                    stop_worker(process)
                Dispatcher(load_settings(config), open_database(url)).purge()
            assert "taken over by another sender; not sent by this one" in logs[0].read_text(), "no takeover"
            counts = copies(sink)
            assert all(n == 1 for n in counts.values()), {a: n for a, n in counts.items() if n > 1}
            ledger = Ledger(open_database(url))
            assert set(emails) - set(counts) <= {r["email"] for r in ledger.rows(1, state="ambiguous")}
            assert ledger.counts(1)["sent"] >= 300 - 4
    finally:
        postgres.drop(url)
