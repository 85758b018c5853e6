"""Celery workers for sending: `newsletter worker` sends batches; `send --workers` and `serve` enqueue them.

The ledger stays the only judge of what was sent. A task carries an edition id and explicit ledger row ids,
nothing else; the worker claims those rows that are still due (atomically: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) and sends them with the same pool and ledger rules as `send` (``sending.deliver_rows``). So:

* **acks_late**: a task is acknowledged when its batch is done. A worker that dies mid-batch leaves it
  unacknowledged and the broker hands it to another worker (RabbitMQ at once, Redis after
  ``visibility_timeout_seconds``).
* **idempotent**: a task delivered twice (redelivery, re-enqueue) sends only rows still pending or due.
  Rows of its batch that another claim still holds make it retry once that lease has lapsed.
* **nothing lost**: a dead worker's claims lapse after ``[delivery] lease_seconds``; rows that never
  reached DATA go back to pending (those that did become ambiguous, as always). `send --workers` waits for
  the edition and, when rows are pending while the queue is empty and no row is claimed, enqueues them
  again: the survivors complete them without waiting for the broker.
* **halts reported**: a worker whose batch halts (a refusal by policy, a session error) leaves the reason
  on the halted row; `send --workers` reads it there (no result backend) and stops with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import utcnow
from newsletter.config import Settings
from newsletter.config.redact import redact
from newsletter.delivery.outgoing import MessageFactory
from newsletter.delivery.pool import RunStats
from newsletter.delivery.sending import deliver_rows, message_factory, smtp_password
from newsletter.errors import ConfigError, DeliveryError
from newsletter.records.editions import Edition
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import STATES, Ledger
from newsletter.storage.ledger_tallies import HALTS
from newsletter.storage.webhook_events import attach as attach_webhooks

log = logging.getLogger(__name__)

SEND_TASK = "newsletter.send_batch"
_EDITIONS_KEPT = 8
"""Message factories (one MIME template per variant) a worker keeps, per edition."""
FRUITLESS_REQUEUES = 5
"""Times in a row `send --workers` enqueues the same pending rows again without progress before it gives up."""


def make_app(settings: Settings) -> Any:
    """The Celery app of this newsletter: broker and queue from ``[workers]``, late acknowledgement."""
    workers = settings.workers
    if not workers.broker:
        raise ConfigError("no workers: set [workers] broker (or NEWSLETTER_BROKER_URL) to a Redis or RabbitMQ URL",
                          path=str(settings.config_path))
    try:
        from celery import Celery
    except ImportError:
        raise ConfigError("[workers] needs Celery: pip install -e '.[scale]'") from None
    app = Celery("newsletter", broker=workers.broker, set_as_current=False)
    app.conf.update(
        task_default_queue=workers.queue,
        task_acks_late=True,  # acknowledged after the batch: a worker that dies leaves it to another
        task_reject_on_worker_lost=True,  # a pool process that dies gives its task back too
        worker_prefetch_multiplier=1,  # a worker holds no batches beyond the ones it is sending
        task_ignore_result=True,  # progress lives in the ledger, not in a result backend
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": workers.visibility_timeout_seconds},
        broker_heartbeat=10,  # RabbitMQ: notice a dead connection soon (and stop in 1-2 s, not ~10)
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


# --- the worker's side --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    stats: RunStats
    held_until: datetime | None
    """When the last claim another sender holds on rows of this batch lapses; None when none is held."""


class BatchSender:
    """Sends batches of one worker process: one engine, and one message factory per edition, for all threads."""

    def __init__(self, settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self._editions: dict[int, tuple[Edition, MessageFactory]] = {}
        self._lock = threading.Lock()

    def _edition(self, edition_id: int) -> tuple[Edition, MessageFactory]:
        with self._lock:
            if edition_id not in self._editions:
                edition = EditionStore(self.engine).get_by_id(edition_id)
                if edition is None:
                    raise DeliveryError(f"edition {edition_id} is not in the database {self.engine.url!r}")
                while len(self._editions) >= _EDITIONS_KEPT:
                    self._editions.pop(next(iter(self._editions)))
                self._editions[edition_id] = (edition, message_factory(self.settings, self.engine, edition,
                                                                       clock=self.clock))
            return self._editions[edition_id]

    def send(self, edition_id: int, ids: Collection[int]) -> BatchResult:
        edition, factory = self._edition(edition_id)
        stats = asyncio.run(deliver_rows(self.settings, self.engine, edition, ids, factory=factory, clock=self.clock))
        return BatchResult(stats, Ledger(self.engine).held_until(ids))


def _stats_json(stats: RunStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in RunStats.COUNTERS}


def register_tasks(app: Any, sender: BatchSender) -> Any:
    """Register ``newsletter.send_batch`` (only workers need it; enqueuers send it by name)."""

    @app.task(name=SEND_TASK, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def send_batch(task: Any, edition_id: int, ids: list[int]) -> dict[str, int]:
        try:
            result = sender.send(edition_id, ids)
        except (SQLAlchemyError, OSError) as error:  # the database or the network is away: the rows wait
            countdown = min(300, 2 ** min(task.request.retries, 8))
            log.warning("batch of %d rows of edition %s failed (%s); retrying in %s s", len(ids), edition_id,
                        error, countdown)
            raise task.retry(countdown=countdown) from None
        if result.held_until is not None:
            wait = max(0.5, (result.held_until - sender.clock()).total_seconds() + 0.5)
            log.info("rows of this batch are held by another claim; retrying in %.1f s", wait)
            raise task.retry(countdown=wait)
        return _stats_json(result.stats)

    return send_batch


def worker_hostname() -> str:
    return f"newsletter-{os.getpid()}@{socket.gethostname()}"


def run_worker(settings: Settings, *, concurrency: int | None = None, loglevel: str = "INFO") -> int:
    """Run a Celery worker for this newsletter until it is stopped (SIGTERM: finish the batches, then exit)."""
    app = make_app(settings)
    signer_from_settings(settings)  # a worker without the signing key or the SMTP password fails here, at once,
    smtp_password(settings)  # not on every batch it takes
    engine = open_database(settings.newsletter.database_url)
    attach_webhooks(engine, [(w.url, w.events) for w in settings.webhooks])  # a bounce here is an event too
    register_tasks(app, BatchSender(settings, engine))
    threads = concurrency or settings.workers.concurrency
    worker = app.Worker(
        hostname=worker_hostname(),
        pool="threads",  # batches in threads: the consumer stays free for heartbeats, pings and a clean stop
        concurrency=threads,
        loglevel=loglevel,
        queues=[settings.workers.queue],
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


# --- the enqueuing side -------------------------------------------------------------------------------------


def queue_length(app: Any, queue: str) -> int:
    """Tasks waiting in ``queue`` that no worker has taken yet (0 for a queue never declared)."""
    from kombu.exceptions import ChannelError

    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        try:
            return int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:
            return 0


@dataclass
class WorkerRun:
    """What `send --workers` (or a scheduled send) did: batches enqueued, rows re-enqueued, final counts."""

    enqueued: int = 0
    batches: int = 0
    requeued: int = 0
    workers: list[str] = field(default_factory=list)
    """Workers that answered a ping when the run started."""
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    halt: str | None = None
    """Why a worker halted on a row of this run (the relay refused by policy, a session error), as it
    stored it in the ledger: following the workers stopped there."""

    def stats(self) -> RunStats:
        """The run's outcomes, from the ledger's counts before and after it, and the halt if one came."""
        def grown(state: str) -> int:
            return max(0, self.after.get(state, 0) - self.before.get(state, 0))

        return RunStats(sent=grown("sent"), deferred=grown("deferred"), failed=grown("failed"),
                        ambiguous=grown("ambiguous"), suppressed=grown("suppressed"), halt=self.halt)


class Dispatcher:
    """Enqueues batches of ledger rows and watches the ledger until the workers have tried every one."""

    def __init__(self, settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utcnow,
                 app: Any = None) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.app = app if app is not None else make_app(settings)
        self.ledger = Ledger(engine)
        self.queue = settings.workers.queue

    def enqueue(self, edition_id: int, ids: Sequence[int]) -> int:
        """One task per ``batch_size`` rows; returns the number of tasks."""
        size = self.settings.workers.batch_size
        batches = 0
        for start in range(0, len(ids), size):
            self.app.send_task(SEND_TASK, args=[edition_id, list(ids[start : start + size])], queue=self.queue)
            batches += 1
        return batches

    def waiting(self) -> int:
        """Tasks in the queue that no worker has taken yet."""
        return queue_length(self.app, self.queue)

    def purge(self) -> int:
        """Drop every task waiting in the queue (their rows stay pending in the ledger)."""
        return int(self.app.control.purge() or 0)

    def ping(self, *, timeout: float = 1.0) -> list[str]:
        """Names of the workers that answer within ``timeout`` seconds."""
        return sorted(name for reply in self.app.control.ping(timeout=timeout) or [] for name in reply)

    def run(
        self,
        edition_id: int,
        *,
        stop: threading.Event | None = None,
        wait: bool = True,
        on_progress: Callable[[int, int, dict[str, int]], None] | None = None,
        poll_seconds: float = 0.5,
        settle_seconds: float = 2.0,
    ) -> WorkerRun:
        """Enqueue every row that is due, then (``wait``) follow the ledger until none is left to try.

        ``on_progress(done, total, counts)`` is called at every poll. When rows are still to be tried while
        the queue is empty and nothing is claimed for ``settle_seconds`` (their worker died, their task was
        lost), they are enqueued again: duplicate tasks are harmless, a lost one would not be.

        A worker that halts (a refusal that is not the readers' fault, a session error) leaves its row pending
        with the reason (``Ledger.halt_reason``): following stops at the next poll with ``WorkerRun.halt`` set,
        instead of enqueuing rows that the relay will refuse again. Batches still queued are left to the
        workers, which halt on their own.
        """
        stop = stop or threading.Event()
        started = self.clock()
        self.ledger.release_expired(edition_id, now=started)
        run = WorkerRun(before=self.ledger.counts(edition_id))
        halts = self.ledger.tallies(edition_id)[HALTS]  # before the first batch is enqueued: it may halt at once
        ids = self.ledger.due_ids(edition_id, now=started)
        if wait and ids:
            run.workers = self.ping()
            if not run.workers:
                log.warning("no worker answered a ping; the batches wait in queue %r until a `newsletter worker` "
                            "takes them", self.queue)
        run.enqueued = len(ids)
        run.batches = self.enqueue(edition_id, ids)
        total = self.ledger.outstanding(edition_id, due_by=started)
        quiet_since: float | None = None
        fruitless, left_at_requeue = 0, -1
        drifted = False
        while wait and not stop.is_set():
            now = self.clock()
            self.ledger.release_expired(edition_id, now=now)
            # The edition's tallies, not its rows: a poll reads the same few rows at 100 readers or 1,000,000.
            tallies = self.ledger.tallies(edition_id)
            counts: dict[str, int] = {state: tallies[state] for state in STATES}
            left = counts["pending"] + counts["claimed"] + self.ledger.deferred_due(edition_id, due_by=started)
            if left == 0:  # the tallies' word, checked against the rows (once: it is the end of the run)
                left = self.ledger.outstanding(edition_id, due_by=started)
                if left and not drifted:
                    drifted = True
                    log.warning("the ledger's tallies of edition %s say every row was tried, but %d rows are left: "
                                "following them by their rows", edition_id, left)
            if on_progress is not None:
                on_progress(max(0, total - left), total, counts)
            if left == 0:
                run.finished = True
                break
            if tallies[HALTS] > halts:  # a sender halted on a row since the run began: the reason is on the row
                run.halt = self.ledger.halt_reason(edition_id, since=started)
            if run.halt is not None:
                log.warning("a worker stopped sending edition %s: %s", edition_id, run.halt)
                break
            if counts["claimed"] == 0 and self.waiting() == 0:
                quiet_since = quiet_since if quiet_since is not None else time.monotonic()
                if time.monotonic() - quiet_since >= settle_seconds:
                    fruitless = fruitless + 1 if left == left_at_requeue else 0
                    if fruitless >= FRUITLESS_REQUEUES:
                        raise DeliveryError(
                            f"{left} rows of edition {edition_id} stay pending although they were enqueued "
                            f"{fruitless + 1} times: is a `newsletter worker` failing? (see its log)")
                    left_at_requeue = left
                    again = self.ledger.due_ids(edition_id, now=now)
                    log.warning("%d rows of edition %s are pending with no task queued; enqueuing them again",
                                len(again), edition_id)
                    self.enqueue(edition_id, again)
                    run.requeued += len(again)
                    quiet_since = None
            else:
                quiet_since = None
            stop.wait(poll_seconds)
        run.after = self.ledger.counts(edition_id)
        return run


def send_with_workers(
    settings: Settings,
    engine: Engine,
    edition_id: int,
    *,
    clock: Callable[[], datetime] = utcnow,
    stop: threading.Event | None = None,
    wait: bool = True,
    on_progress: Callable[[int, int, dict[str, int]], None] | None = None,
) -> WorkerRun:
    """Hand the edition's due rows to the workers and, with ``wait``, follow them until every one was tried."""
    from kombu.exceptions import OperationalError

    lost: tuple[type[BaseException], ...] = (OperationalError, OSError)
    try:  # kombu lets the redis client's own errors through from a broadcast (ping) when the server goes away
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        lost += (RedisConnectionError, RedisTimeoutError)
    except ImportError:  # pragma: no cover - a broker other than Redis
        pass
    try:
        return Dispatcher(settings, engine, clock=clock).run(edition_id, stop=stop, wait=wait,
                                                             on_progress=on_progress)
    except lost as error:
        raise DeliveryError(redact(f"cannot reach the broker {settings.workers.broker!r}: {error}")
                            + _left_in_ledger(engine, edition_id)) from None


def _left_in_ledger(engine: Engine, edition_id: int) -> str:
    """What a lost broker leaves: the rows still to send (safe in the ledger) and what to run."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        counts = Ledger(engine).counts(edition_id)
    except SQLAlchemyError:
        return "; the rows not yet sent stay in the ledger: run `newsletter send --workers` again once it is back"
    return (f"; {counts['pending']} pending, {counts['claimed']} claimed by workers and {counts['deferred']} "
            "deferred messages stay in the ledger, none lost: run `newsletter send --workers` again once the "
            "broker is back (or `newsletter send` to send from this machine)")


def queue_status(settings: Settings) -> dict[str, Any]:
    """For `newsletter status`: the queue's name and how many batches wait in it (or why that is unknown)."""
    from kombu.exceptions import OperationalError

    view: dict[str, Any] = {"name": settings.workers.queue, "waiting": None, "error": None}
    try:
        view["waiting"] = queue_length(make_app(settings), settings.workers.queue)
    except (OperationalError, OSError, ConfigError) as error:
        view["error"] = redact(str(error))
    return view
