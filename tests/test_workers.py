"""Celery workers against the real servers: Redis and RabbitMQ brokers, PostgreSQL, an aiosmtpd sink.

The batch function itself runs on SQLite and PostgreSQL; the end-to-end runs start real `newsletter worker`
processes and kill one of them with SIGKILL in the middle of a batch.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.clock import worker_name
from newsletter.config import load_settings
from newsletter.delivery.sending import deliver
from newsletter.delivery.workers import SEND_TASK, BatchSender, Dispatcher, make_app, register_tasks
from newsletter.errors import DeliveryError
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger
from newsletter.storage.ledger_tallies import ledger_tallies
from newsletter.usecases.campaign import prepare
from subscribers.store import SubscriberStore
from tests.conftest import ROOT
from tests.databases import HOW_TO_START, PostgresServer, scratch_redis
from tests.mailsink import Fault, MailSink
from tests.services import unavailable
from tests.support import run as cli_run
from tests.support import secret_fixture
from tests.test_delivery import EDITION, START, Clock, build, fill, received, settings_for
from tests.test_send import SECRET, TOPIC_SETS

RABBITMQ_URL = os.environ.get("NEWSLETTER_TEST_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672//"
pytestmark = pytest.mark.needs("celery")


secret = secret_fixture(SECRET)


def send_only(ledger: Ledger, sink: MailSink, ids: list[int], clock: Clock) -> dict[str, int]:
    asyncio.run(deliver(ledger.engine, settings=settings_for(sink), sender="papers@example.org", edition_id=EDITION,
                        build_message=build, clock=clock, only=ids))
    return ledger.counts(EDITION)


# --- one batch: exactly its rows, once ---------------------------------------------------------------------


def test_a_batch_sends_exactly_its_rows_and_again_sends_nothing(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 30)
    ids = ledger.due_ids(EDITION, now=START)
    assert len(ids) == 30
    batch = ids[5:15]
    counts = send_only(ledger, sink, batch, Clock())
    assert (counts["sent"], counts["pending"]) == (10, 20)
    assert received(sink) == dict.fromkeys(emails[5:15], 1)
    assert send_only(ledger, sink, batch, Clock())["sent"] == 10  # a redelivered task: nothing twice
    assert len(sink.messages) == 10
    assert ledger.due_ids(EDITION, now=START) == ids[:5] + ids[15:]


def test_rows_another_claim_holds_are_left_to_it_until_its_lease_lapses(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 6)
    ids = ledger.due_ids(EDITION, now=START)
    dead = Ledger(ledger.engine, worker="dead:1")
    held = dead.claim(EDITION, limit=2, now=START, lease=timedelta(seconds=30))  # a worker that then died
    assert [d.id for d in held] == ids[:2]
    clock = Clock()
    counts = send_only(ledger, sink, ids, clock)
    assert (counts["sent"], counts["claimed"]) == (4, 2)
    assert ledger.held_until(ids) == START + timedelta(seconds=30)
    assert ledger.held_until(ids[2:]) is None
    clock.now = START + timedelta(seconds=31)  # the dead worker's lease lapsed: the next try sends them
    counts = send_only(ledger, sink, ids, clock)
    assert (counts["sent"], counts["claimed"]) == (6, 0)
    assert ledger.held_until(ids) is None
    assert received(sink) == dict.fromkeys(emails, 1)
    assert ledger.by_worker(EDITION) == {worker_name(): {"sent": 6}}


@pytest.mark.slow
def test_the_task_retries_while_another_claim_holds_rows_of_its_batch(tmp_path: Path, sink: MailSink,
                                                                       database_url: str) -> None:
    # called directly, as a worker calls it (a retry then raises instead of publishing: no broker is needed)
    config = worker_config(tmp_path, sink, database_url=database_url, broker="redis://127.0.0.1:1/0")
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 8)
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    prepared = prepare(settings, engine, frequency="daily", now=datetime.now(UTC), day=None,
                       signer=signer_from_settings(settings))
    ledger = Ledger(engine)
    ids = ledger.due_ids(prepared.edition.id, now=datetime.now(UTC))
    from celery.exceptions import Retry  # the scale extra: imported by the tests that run, never at collection

    # the task is made first, so the held row's lease (3 s) cannot lapse while the worker's parts load
    task = register_tasks(make_app(settings), BatchSender(settings, engine))
    held_until = time.monotonic() + 3.0
    Ledger(engine, worker="dead:1").claim(prepared.edition.id, limit=1, now=datetime.now(UTC),
                                          lease=timedelta(seconds=3))
    with pytest.raises(Retry):  # one row is held: the task sends the rest and asks to run again
        task.run(prepared.edition.id, ids)
    assert ledger.counts(prepared.edition.id)["sent"] == 7
    time.sleep(max(0.0, held_until - time.monotonic()) + 0.2)
    assert task.run(prepared.edition.id, ids)["sent"] == 1  # the lease lapsed: the retry completes the batch
    assert task.run(prepared.edition.id, ids)["sent"] == 0  # and a redelivery sends nothing
    assert len(sink.messages) == 8
    engine.dispose()


class LostTasks:
    """A stand-in broker that loses every task it is given (so `send --workers` must notice)."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []

    def send_task(self, name: str, *, args: list[Any], queue: str) -> None:
        assert name == SEND_TASK
        self.sent.append(list(args[1]))


def test_rows_whose_tasks_are_lost_are_enqueued_again_then_reported(ledger: Ledger, tmp_path: Path,
                                                                    sink: MailSink, database_url: str) -> None:
    fill(ledger, 5)
    settings = load_settings(worker_config(tmp_path, sink, database_url=database_url, broker="redis://127.0.0.1:1/0"))
    broker = LostTasks()
    dispatcher = Dispatcher(settings, ledger.engine, app=broker, clock=Clock())
    dispatcher.waiting = lambda: 0  # type: ignore[method-assign]  # the queue is empty: the tasks are gone
    dispatcher.ping = lambda **_: ["a-worker@host"]  # type: ignore[method-assign]
    with pytest.raises(DeliveryError, match=r"5 rows of edition 1 stay pending although they were enqueued 6 times: "
                                            r"is a `newsletter worker` failing\? \(see its log\)"):
        dispatcher.run(EDITION, poll_seconds=0.01, settle_seconds=0)
    ids = ledger.due_ids(EDITION, now=START)
    assert broker.sent == [ids] * 6  # once, then again after each quiet spell


def test_tallies_that_say_every_row_was_tried_are_checked_against_the_rows(
        ledger: Ledger, tmp_path: Path, sink: MailSink, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The dispatcher follows the edition's tallies; their "nothing left" ends a run only once the rows agree."""
    fill(ledger, 5)
    with ledger.engine.begin() as connection:  # tallies gone wrong: no pending row, by their count
        connection.execute(ledger_tallies.update().where(ledger_tallies.c.edition_id == EDITION,
                                                         ledger_tallies.c.key == "pending").values(n=0))
    settings = load_settings(worker_config(tmp_path, sink, database_url=database_url, broker="redis://127.0.0.1:1/0"))
    dispatcher = Dispatcher(settings, ledger.engine, app=LostTasks(), clock=Clock())
    dispatcher.waiting = lambda: 0  # type: ignore[method-assign]
    dispatcher.ping = lambda **_: ["a-worker@host"]  # type: ignore[method-assign]
    with pytest.raises(DeliveryError, match=r"5 rows of edition 1 stay pending although they were enqueued"):
        dispatcher.run(EDITION, poll_seconds=0.01, settle_seconds=0)
    assert "the ledger's tallies of edition 1 say every row was tried, but 5 rows are left" in caplog.text


class InlineWorker:
    """A stand-in broker whose every task is run at once, in this process, as a worker would run it."""

    def __init__(self, ledger: Ledger, sink: MailSink, clock: Clock) -> None:
        self.ledger, self.sink, self.clock = ledger, sink, clock
        self.sent: list[list[int]] = []

    def send_task(self, name: str, *, args: list[Any], queue: str) -> None:
        assert name == SEND_TASK
        self.sent.append(list(args[1]))
        send_only(self.ledger, self.sink, list(args[1]), self.clock)


def test_a_worker_halted_by_the_relay_stops_the_dispatcher_with_its_reason(ledger: Ledger, tmp_path: Path,
                                                                         sink: MailSink, database_url: str) -> None:
    emails = fill(ledger, 5)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="550 5.7.1 Relaying denied", times=None))
    settings = load_settings(worker_config(tmp_path, sink, database_url=database_url, broker="redis://127.0.0.1:1/0"))
    clock = Clock()
    broker = InlineWorker(ledger, sink, clock)
    dispatcher = Dispatcher(settings, ledger.engine, app=broker, clock=clock)
    dispatcher.waiting = lambda: 0  # type: ignore[method-assign]
    dispatcher.ping = lambda **_: ["a-worker@host"]  # type: ignore[method-assign]
    run = dispatcher.run(EDITION, poll_seconds=0.01, settle_seconds=0)
    assert run.halt == run.stats().halt
    assert re.fullmatch(rf"550 5\.7\.1 Relaying denied \(relay 127\.0\.0\.1:{sink.port}, in reply to RCPT of "
                        rf"({'|'.join(re.escape(e) for e in emails)})\)", run.halt or ""), run.halt
    assert not run.finished
    assert len(broker.sent) == 1  # not enqueued again
    assert ledger.counts(EDITION)["pending"] == 5
    assert ledger.halt_reason(EDITION, since=START + timedelta(seconds=1)) is None  # a later run starts afresh


@pytest.mark.usefixtures("database_url")
def test_concurrent_claims_never_take_a_row_twice(ledger: Ledger) -> None:
    fill(ledger, 400)
    taken: list[list[int]] = []
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        mine = Ledger(ledger.engine, worker=f"w{n}")
        try:
            while batch := mine.claim(EDITION, limit=7, now=START, lease=timedelta(minutes=5)):
                taken.append([d.id for d in batch])
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = [i for batch in taken for i in batch]
    assert len(ids) == len(set(ids)) == 400
    assert ledger.counts(EDITION)["claimed"] == 400


# --- end to end: `newsletter worker` processes, `send --workers` ---------------------------------------------


def worker_config(folder: Path, sink: MailSink, *, database_url: str, broker: str, queue: str = "newsletter",
                  extra: str = "") -> Path:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text = text.replace('database_url = "sqlite:///offline.db"', f'database_url = "{database_url}"')
    text += (f"\n[delivery]\nport = {sink.port}\nconcurrency = 4\ntimeout_seconds = 5\nlease_seconds = 2\n"
             f'\n[workers]\nbroker = "{broker}"\nqueue = "{queue}"\nbatch_size = 50\n{extra}\n')
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def add_subscribers(config: Path, count: int) -> list[str]:
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    store = SubscriberStore(engine)
    emails = [f"reader{i}@example.com" for i in range(count)]
    with engine.begin() as connection:
        for i, address in enumerate(emails):
            store.put(connection, address, now=datetime.now(UTC), name=f"Reader {i}",
                      topics=TOPIC_SETS[i % len(TOPIC_SETS)], frequency="daily", pending=False, source="cli",
                      force=False)
    engine.dispose()
    return emails


def start(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *args],
                                stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ))


def wait_until_ready(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while " ready." not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=30)


@pytest.fixture
def fresh_postgres(postgres: PostgresServer) -> Iterator[str]:
    """A database of its own (the worker processes connect to it), dropped afterwards."""
    url = postgres.create()
    yield url
    postgres.drop(url)


@pytest.mark.slow
@pytest.mark.needs("redis")
def test_two_workers_one_killed_mid_batch_every_reader_gets_exactly_one(
    tmp_path: Path, sink: MailSink, fresh_postgres: str
) -> None:
    with scratch_redis() as broker:
        queue = f"nl-test-{secrets.token_hex(4)}"
        config = worker_config(tmp_path, sink, database_url=fresh_postgres, broker=broker, queue=queue)
        assert cli_run(config, "fetch")[0] == 0
        emails = add_subscribers(config, 2000)
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        ledger = Ledger(engine)
        sink.reply_delay = 0.02  # slow enough to kill a worker in the middle of a batch
        workers = [start(config, "worker", log=tmp_path / f"worker{n}.log") for n in range(2)]
        send = None
        try:
            for n, worker in enumerate(workers):
                wait_until_ready(worker, tmp_path / f"worker{n}.log")
            send = start(config, "send", "--workers", log=tmp_path / "send.log")
            victim = f"{socket.gethostname()}:{workers[0].pid}"
            deadline = time.monotonic() + 60
            # early in one of its batches: most of its 50 claimed rows have not reached DATA yet
            while not (len(sink.messages) >= 300 and ledger.by_worker(1).get(victim, {}).get("claimed", 0) >= 25):
                assert time.monotonic() < deadline, (len(sink.messages), ledger.by_worker(1))
                assert send.poll() is None, (tmp_path / "send.log").read_text()
                assert all(w.poll() is None for w in workers), [w.poll() for w in workers]
                time.sleep(0.01)
            held = ledger.by_worker(1)[victim]["claimed"]
            workers[0].send_signal(signal.SIGKILL)  # mid-batch: its claims and its unacknowledged task are left
            workers[0].wait()
            sink.reply_delay = 0
            # 4: the killed worker's messages in DATA were left ambiguous (exit 4 says so)
            assert send.wait(timeout=60) in (0, 4), (tmp_path / "send.log").read_text()
            output = (tmp_path / "send.log").read_text()
        finally:
            for process in [*workers, *([send] if send else [])]:
                stop(process, signal.SIGKILL if process is workers[0] else signal.SIGTERM)
            Dispatcher(settings, engine).purge()
        counts = ledger.counts(1)
        assert held > 0
        assert counts["pending"] == counts["claimed"] == counts["deferred"] == counts["failed"] == 0
        assert counts["sent"] + counts["ambiguous"] == 2000
        copies = {address: len(messages) for address, messages in sink.by_recipient().items()}
        assert all(n == 1 for n in copies.values()), {a: n for a, n in copies.items() if n != 1}
        ambiguous = {row["email"] for row in ledger.rows(1, state="ambiguous")}
        assert {e for e in emails if e not in copies} <= ambiguous  # only an ambiguous row may be missing
        assert counts["ambiguous"] <= 4  # at most the killed worker's messages in flight (4 connections)
        for address in ambiguous:
            assert f"ambiguous {address}" in output
        assert "enqueued 2000 messages for the workers; " in output
        assert " enqueued again after their worker stopped" in output
        survivor = f"{socket.gethostname()}:{workers[1].pid}"
        by_worker = ledger.by_worker(1)
        assert set(by_worker) == {victim, survivor}
        assert by_worker[survivor]["sent"] + by_worker[victim].get("sent", 0) == counts["sent"]
        result = CliRunner().invoke(cli, ["--config", str(config), "status"])
        assert result.exit_code == 0, result.output
        assert "Per worker: daily-" in result.output
        assert f"queue {queue}: 0 batches waiting for a worker" in result.output
        engine.dispose()


@pytest.mark.slow
@pytest.mark.needs("redis")
def test_a_relay_refusing_by_policy_stops_send_with_workers_at_once_quoting_its_reply(
    tmp_path: Path, sink: MailSink, fresh_postgres: str
) -> None:
    reply = "550 5.7.1 Relaying denied"
    with scratch_redis() as broker:
        config = worker_config(tmp_path, sink, database_url=fresh_postgres, broker=broker,
                               queue=f"nl-test-{secrets.token_hex(4)}")
        assert cli_run(config, "fetch")[0] == 0
        emails = add_subscribers(config, 20)
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        ledger = Ledger(engine)
        sink.add_fault(Fault(phase="rcpt", action="reply", reply=reply, times=None))
        worker = start(config, "worker", log=tmp_path / "worker.log")
        try:
            wait_until_ready(worker, tmp_path / "worker.log")
            began = time.monotonic()
            code, output = cli_run(config, "send", "--workers")
            took = time.monotonic() - began
            assert code == 1, output
            quoted = f"Error: delivery stopped: {reply} (relay 127.0.0.1:{sink.port}, in reply to RCPT of reader"
            assert quoted in output
            assert "not waiting for the workers" not in output
            assert took < 8, f"{took:.1f} s: stopped after the requeue rounds, not at the worker's halt"
            counts = ledger.counts(1)
            assert (counts["pending"], counts["sent"], counts["failed"], counts["suppressed"]) == (20, 0, 0, 0)
            assert SubscriberStore(engine).counts_by_status()["bounced"] == 0
            assert len(sink.messages) == 0
            sink.clear_faults()  # the relay is fixed
            code, output = cli_run(config, "send", "--workers")
            assert code == 0, output
        finally:
            assert stop(worker) == 0, (tmp_path / "worker.log").read_text()
            Dispatcher(settings, engine).purge()
        assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
        engine.dispose()


@pytest.mark.slow
@pytest.mark.needs("redis")
def test_serve_with_workers_enqueues_the_scheduled_edition(tmp_path: Path, sink: MailSink,
                                                           fresh_postgres: str) -> None:
    from newsletter.service.scheduler import Service
    from newsletter.storage.runs import RunStore

    with scratch_redis() as broker:
        config = worker_config(tmp_path, sink, database_url=fresh_postgres, broker=broker,
                               queue=f"nl-test-{secrets.token_hex(4)}")
        config.write_text(config.read_text() + '\n[schedule]\nfetch = ""\ndaily = "*/2 * * * * *"\nweekly = ""\n'
                          'retry = ""\nhousekeeping = ""\n')
        assert cli_run(config, "fetch")[0] == 0
        emails = add_subscribers(config, 60)
        worker = start(config, "worker", log=tmp_path / "worker.log")
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        runs = RunStore(engine)
        try:
            wait_until_ready(worker, tmp_path / "worker.log")
            service = Service(settings, engine)

            async def serve_until_a_daily_run_is_done() -> None:
                task = asyncio.create_task(service.run())
                deadline = time.monotonic() + 60
                while not any(r.finished for r in runs.recent(job="daily")):
                    assert not task.done()
                    assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                    await asyncio.sleep(0.1)
                service.request_stop()
                await asyncio.wait_for(task, timeout=30)

            asyncio.run(serve_until_a_daily_run_is_done())
        finally:
            assert stop(worker) == 0, (tmp_path / "worker.log").read_text()
        assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
        done = [r for r in runs.recent(job="daily") if r.finished]
        assert done[-1].status == "ok"
        assert "60 sent" in done[-1].summary
        assert set(Ledger(engine).by_worker(1)) == {f"{socket.gethostname()}:{worker.pid}"}  # the worker sent
        engine.dispose()


@pytest.mark.slow
@pytest.mark.needs("rabbitmq")
def test_a_rabbitmq_broker_and_send_without_waiting(tmp_path: Path, sink: MailSink, fresh_postgres: str) -> None:
    queue = f"nl-test-{secrets.token_hex(4)}"
    config = worker_config(tmp_path, sink, database_url=fresh_postgres, broker=RABBITMQ_URL, queue=queue)
    settings = load_settings(config)
    app = make_app(settings)
    problem = None
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        problem = str(error)
    if problem is not None:
        unavailable("rabbitmq", f"RabbitMQ is not reachable at {RABBITMQ_URL} ({problem}): {HOW_TO_START}")
    assert cli_run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 150)
    worker = None
    try:
        code, output = cli_run(config, "send", "--workers", "--no-wait")  # no worker runs yet
        assert code == 0, output
        assert "enqueued 150 messages for the workers" in output
        assert "not waiting for the workers: they go on; `newsletter status` shows their progress" in output
        code, output = cli_run(config, "status")
        assert code == 0, output
        assert f"queue {queue}: 3 batches waiting for a worker" in output
        worker = start(config, "worker", log=tmp_path / "worker.log")
        ledger = Ledger(open_database(settings.newsletter.database_url))
        deadline = time.monotonic() + 60
        while ledger.counts(1)["sent"] < 150:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, ledger.counts(1)
            time.sleep(0.1)
        code, output = cli_run(config, "send", "--workers")  # again: nothing is due, nothing is sent
        assert code == 0, output
        assert "enqueued 0 messages for the workers" in output
    finally:
        if worker is not None:
            assert stop(worker) == 0, (tmp_path / "worker.log").read_text()
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    ledger.engine.dispose()


def test_workers_need_a_broker(tmp_path: Path, sink: MailSink) -> None:
    config = worker_config(tmp_path, sink, database_url="sqlite:///w.db", broker="")
    code, output = cli_run(config, "worker")
    assert code == 1
    assert "Error: " in output
    assert "no workers: set [workers] broker (or NEWSLETTER_BROKER_URL) to a Redis or RabbitMQ URL" in output
    code, output = cli_run(config, "send", "--workers", "--limit", "3")
    assert code == 2
    assert "--workers does not go with --limit, --processes, --dry-run or --to" in output
    assert SEND_TASK == "newsletter.send_batch"


@pytest.mark.slow  # kombu retries the unreachable broker for a while
def test_an_unreachable_broker_or_a_worker_without_its_secrets_is_a_one_line_error(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = worker_config(tmp_path, sink, database_url="sqlite:///w.db", broker="redis://127.0.0.1:1/0")
    assert cli_run(config, "fetch")[0] == 0
    add_subscribers(config, 3)
    code, output = cli_run(config, "send", "--workers")
    assert code == 1
    assert "Error: cannot reach the broker 'redis://127.0.0.1:1/0': " in output
    assert Ledger(open_database(load_settings(config).newsletter.database_url)).counts(1)["pending"] == 3
    monkeypatch.delenv("NEWSLETTER_SECRET")
    code, output = cli_run(config, "worker")  # fails at start, not on every batch it would take
    assert code == 1
    assert "Error: no signing key: set the environment variable NEWSLETTER_SECRET" in output


@pytest.mark.slow
@pytest.mark.needs("redis")
def test_send_with_workers_posts_each_channel_once(tmp_path: Path, sink: MailSink, fresh_postgres: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`send --workers` posts the edition's channels too, through the channel ledger: one row and one post per
    channel however often it runs (it posted nothing to channels before)."""
    from tests.chat_support import ChatServer

    with scratch_redis() as broker, ChatServer() as chat:
        monkeypatch.setenv("CHAT_LAB_JSON", f"json://127.0.0.1:{chat.port}/hook")
        config = worker_config(tmp_path, sink, database_url=fresh_postgres, broker=broker,
                               queue=f"nl-test-{secrets.token_hex(4)}")
        config.write_text(config.read_text() + '\n[[channels]]\nname = "lab-json"\nurl_env = "CHAT_LAB_JSON"\n')
        assert cli_run(config, "fetch")[0] == 0
        emails = add_subscribers(config, 30)
        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        worker = start(config, "worker", log=tmp_path / "worker.log")
        try:
            wait_until_ready(worker, tmp_path / "worker.log")
            code, output = cli_run(config, "send", "--workers")
            assert code == 0, output
            assert "channel lab-json: sent" in output
            code, again = cli_run(config, "send", "--workers")
            assert code == 0, again
            assert "channel lab-json: unchanged" in again
        finally:
            assert stop(worker) == 0, (tmp_path / "worker.log").read_text()
            Dispatcher(settings, engine).purge()
        assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
        posts = chat.posts()
        assert [p.path for p in posts] == ["/hook"]
        assert "http://127.0.0.1:8000/archive/daily-" in posts[0].json()["message"]
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT channel, state FROM channel_deliveries").all()
        assert [tuple(r) for r in rows] == [("lab-json", "sent")]
        engine.dispose()
