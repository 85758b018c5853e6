"""A send keeps its event loop running while another program holds SQLite's write lock.

Every database call of a send that can wait runs in a thread: a write that waits for the lock (busy_timeout
is 30 s) would otherwise freeze every SMTP session, timeout and lease renewal of the process. The ledger
writer's commits are first tried on the loop without waiting (``ledger_quick.QuickRecorder``). A ticker coroutine on
the sender's loop records the longest gap between its ticks while a plain sqlite3 connection holds
``BEGIN IMMEDIATE`` for a few seconds; real SQLite file, real SMTP relay (``tests.mailsink``) in its own thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path

from newsletter.delivery.sending import deliver
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger, NewDelivery
from newsletter.storage.ledger_quick import QuickRecorder
from subscribers.store import SubscriberStore
from tests.mailsink import Fault, MailSink
from tests.test_delivery import EDITION, START, Clock, build, fill, received, settings_for

LOCK_SECONDS = 3.0
MAX_GAP = 1.0
"""Longest pause of the loop allowed; blocking on the lock pauses it for about LOCK_SECONDS."""


class LockHolder(threading.Thread):
    """Another program: once the sender has claimed rows, it holds the write lock for LOCK_SECONDS."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.locked_at: float | None = None
        self.released_at: float | None = None

    def run(self) -> None:
        connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                (claimed,) = connection.execute("SELECT count(*) FROM deliveries WHERE state = 'claimed'").fetchone()
                if claimed:
                    break
                time.sleep(0.002)
            connection.execute("BEGIN IMMEDIATE")
            self.locked_at = time.monotonic()
            time.sleep(LOCK_SECONDS)
            connection.execute("ROLLBACK")
            self.released_at = time.monotonic()
        finally:
            connection.close()


async def send_while_locked(path: Path, send: Awaitable[object]) -> tuple[float, LockHolder]:
    """Run ``send`` with the lock holder and a ticker; return the ticker's longest gap and the holder."""
    loop = asyncio.get_running_loop()
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    holder = LockHolder(path)
    holder.start()
    try:
        await send
    finally:
        ticker.cancel()
    await asyncio.to_thread(holder.join, 30)
    return longest, holder


async def test_a_write_lock_held_by_another_program_does_not_stop_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = open_database(f"sqlite:///{path}")
    ledger = Ledger(engine, worker="test")
    emails = fill(ledger, 40)
    with MailSink() as sink:
        sink.reply_delay = 0.01
        settings = settings_for(sink, concurrency=4, claim_batch=10)
        longest, holder = await send_while_locked(path, deliver(
            engine, settings=settings, sender="papers@example.org", edition_id=EDITION, build_message=build,
            clock=Clock()))
        done = time.monotonic()
        assert holder.locked_at is not None
        assert holder.released_at is not None
        assert holder.released_at < done  # the send had to wait for the lock: its writes met it
        assert longest < MAX_GAP, f"the event loop stood still for {longest:.2f} s"
        assert ledger.counts(EDITION)["sent"] == 40
        assert received(sink) == dict.fromkeys(emails, 1)
    engine.dispose()


async def test_a_bounce_while_another_program_holds_the_write_lock_does_not_stop_the_event_loop(
        tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = open_database(f"sqlite:///{path}")
    ledger = Ledger(engine, worker="test")
    store = SubscriberStore(engine)
    readers = [store.add(f"reader{i}@example.com", now=START) for i in range(6)]
    ledger.add(EDITION, [NewDelivery(subscriber_id=r.id, email=r.email, name="", variant_key="v",
                                     message_id=f"<{r.id}@example.org>") for r in readers], now=START)
    gone = readers[0]
    clock = Clock()

    def bounce(subscriber_id: int, code: int, reply: str) -> None:  # as deliver_edition's: a database write
        store.mark_bounced(subscriber_id, now=clock())

    with MailSink() as sink:
        sink.add_fault(Fault(phase="mail", action="delay", seconds=0.3, times=None))  # the refusal comes in the lock
        sink.add_fault(Fault(phase="rcpt", action="reply", reply="550 5.1.1 No such user", recipient=gone.email))
        settings = settings_for(sink, concurrency=2, claim_batch=10)
        longest, holder = await send_while_locked(path, deliver(
            engine, settings=settings, sender="papers@example.org", edition_id=EDITION, build_message=build,
            clock=clock, on_bounce=bounce))
        assert holder.released_at is not None
        assert longest < MAX_GAP, f"the event loop stood still for {longest:.2f} s"
        assert store.counts_by_status()["bounced"] == 1
        assert ledger.counts(EDITION)["sent"] == 5
        assert received(sink) == {r.email: 1 for r in readers[1:]}
    engine.dispose()


def test_a_commit_tried_without_waiting_writes_nothing_while_another_program_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = open_database(f"sqlite:///{path}")
    ledger = Ledger(engine, worker="test")
    fill(ledger, 2)
    (first, second) = ledger.claim(EDITION, limit=2, now=START, lease=timedelta(minutes=5))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    recorder = QuickRecorder.open(ledger)
    assert recorder is not None
    assert recorder.try_record(data_phase=[(first.id, first.claim_token)], outcomes=[], now=START) is None
    assert time.monotonic() - started < 0.5  # it did not wait out busy_timeout
    other.execute("ROLLBACK")
    other.close()
    assert recorder.try_record(data_phase=[(second.id, second.claim_token)], outcomes=[], now=START) == set()
    recorder.close()
    with engine.connect() as connection:
        phases = dict(connection.exec_driver_sql("SELECT id, phase FROM deliveries").all())
    assert phases == {first.id: "", second.id: "data"}
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
    engine.dispose()
