"""One `newsletter send`: prepare the edition's ledger, then deliver it here or in several processes.

Stopping (SIGINT/SIGTERM) ends claiming, releases what was queued but not started, lets in-flight
messages finish, and returns; running `send` again resumes. Several processes share the work through
the ledger's atomic claims; the parent only watches the ledger to show progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import utcnow
from newsletter.config import Settings
from newsletter.delivery.ledger_writer import one_line
from newsletter.delivery.pool import RunStats
from newsletter.delivery.sending import SendReport, deliver_edition, report
from newsletter.errors import DeliveryError
from newsletter.records.editions import Frequency, Prepared
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.ledger import STATES, Ledger
from newsletter.usecases.campaign import prepare
from newsletter.usecases.channels import post_edition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    counts: dict[str, int]


ProgressCallback = Callable[[Progress], None]


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM ask for a clean stop instead of killing the process mid-message."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_send(
    settings: Settings,
    engine: Engine,
    *,
    frequency: Frequency,
    day: date | None = None,
    limit: int | None = None,
    processes: int | None = None,
    workers: bool = False,
    wait: bool = True,
    clock: Callable[[], datetime] = utcnow,
    on_prepare: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> SendReport:
    """Prepare the edition's ledger, then deliver it: here, in ``processes`` processes, or by the Celery
    ``workers`` (enqueued in batches; with ``wait``, followed until every row was tried)."""
    prepared = prepare(settings, engine, frequency=frequency, now=clock(), day=day,
                       signer=signer_from_settings(settings), progress=on_prepare)
    if prepared.edition.is_empty:
        return report(engine, prepared, RunStats(), now=clock())
    if workers:
        return _deliver_by_workers(settings, engine, prepared, wait=wait, clock=clock, on_progress=on_progress)
    processes = processes or settings.delivery.processes
    if processes > 1 and settings.config_path.is_file():
        stats = _deliver_in_processes(settings, engine, prepared, processes=processes, limit=limit,
                                      on_progress=on_progress)
    else:
        stats = _deliver_here(settings, engine, prepared, limit=limit, clock=clock, on_progress=on_progress)
    result = _final_report(engine, prepared, stats, now=clock())
    if stats.halt is None and not stats.interrupted:  # a stop asked for (or forced) posts nothing more
        result.channels = post_edition(settings, engine, prepared.edition, clock=clock)
    return result


def _final_report(engine: Engine, prepared: Prepared, stats: RunStats, *, now: datetime) -> SendReport:
    """The summary from the ledger; when the database is gone, this run's own counts in one line."""
    try:
        return report(engine, prepared, stats, now=now)
    except SQLAlchemyError as error:
        raise DeliveryError(
            f"the database cannot be used ({one_line(error)}); this run before that: {stats.sent} sent, "
            f"{stats.deferred} deferred, {stats.failed} failed, {stats.ambiguous} ambiguous; run `newsletter "
            "send` again once it is back: it resumes, and never sends a message twice") from None


def _show_progress(on_progress: ProgressCallback | None, engine: Engine, prepared: Prepared, total: int) -> None:
    """Progress counts are a query: one the database cannot answer skips a refresh, never ends the run."""
    if on_progress is None:
        return
    try:
        state = _progress(engine, prepared, total)
    except SQLAlchemyError as error:
        log.warning("could not count the ledger for the progress bar: %s", one_line(error))
        return
    on_progress(state)


def _progress(engine: Engine, prepared: Prepared, total: int) -> Progress:
    """From the edition's tallies (a few rows), not a count of its rows: it runs several times a second."""
    tallies = Ledger(engine).tallies(prepared.edition.id)
    counts: dict[str, int] = {state: tallies[state] for state in STATES}
    remaining = counts["pending"] + counts["claimed"]
    return Progress(done=max(0, total - remaining), total=total, counts=counts)


def _open_work(engine: Engine, prepared: Prepared) -> int:
    counts = Ledger(engine).counts(prepared.edition.id)
    return counts["pending"] + counts["claimed"] + counts["deferred"]


def _deliver_here(
    settings: Settings,
    engine: Engine,
    prepared: Prepared,
    *,
    limit: int | None,
    clock: Callable[[], datetime],
    on_progress: ProgressCallback | None,
) -> RunStats:
    total = _open_work(engine, prepared)

    async def main() -> RunStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        last = 0.0
        counting: asyncio.Future[None] | None = None

        def shown(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning("could not count the ledger for the progress bar: %s", future.exception())

        def progress(_: RunStats) -> None:
            # The counts are a query: in a thread (one at a time), never on the loop that sends.
            nonlocal last, counting
            busy = counting is not None and not counting.done()
            if on_progress is None or busy or time.monotonic() - last <= 0.25:
                return
            last = time.monotonic()
            show = on_progress
            counting = loop.run_in_executor(None, lambda: show(_progress(engine, prepared, total)))
            counting.add_done_callback(shown)

        def request_stop() -> None:
            loop.call_soon_threadsafe(stop.set)

        with _stop_on_signals(request_stop):
            return await deliver_edition(settings, engine, prepared.edition, clock=clock, stop=stop, limit=limit,
                                         on_progress=progress)

    stats = asyncio.run(main())
    _show_progress(on_progress, engine, prepared, total)
    return stats


def _deliver_by_workers(
    settings: Settings,
    engine: Engine,
    prepared: Prepared,
    *,
    wait: bool,
    clock: Callable[[], datetime],
    on_progress: ProgressCallback | None,
) -> SendReport:
    """Enqueue the due rows for the Celery workers; SIGINT/SIGTERM stop waiting (the workers go on)."""
    from newsletter.delivery.workers import send_with_workers

    def progress(done: int, total: int, counts: dict[str, int]) -> None:
        if on_progress is not None:
            on_progress(Progress(done=done, total=total, counts=counts))

    stop = threading.Event()
    with _stop_on_signals(stop.set):
        run = send_with_workers(settings, engine, prepared.edition.id, clock=clock, stop=stop, wait=wait,
                                on_progress=progress)
    result = _final_report(engine, prepared, run.stats(), now=clock())
    result.enqueued = run.enqueued
    result.requeued = run.requeued
    result.waited = run.finished
    # As in-process: after the emails (all tried, or handed over with --no-wait), never after a halt or a stop.
    # This process posts (one request per channel), under the same ledger rows and claims.
    if run.halt is None and not stop.is_set() and (run.finished or not wait):
        result.channels = post_edition(settings, engine, prepared.edition, clock=clock)
    return result


def _deliver_in_processes(
    settings: Settings,
    engine: Engine,
    prepared: Prepared,
    *,
    processes: int,
    limit: int | None,
    on_progress: ProgressCallback | None,
) -> RunStats:
    total = _open_work(engine, prepared)
    share = [] if limit is None else [str(max(1, -(-limit // processes)))]
    command = [sys.executable, "-m", "newsletter.delivery.child", str(settings.config_path.resolve()),
               str(prepared.edition.id), *share]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module
                for _ in range(processes)]

    def forward() -> None:
        for child in children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    stats = RunStats()
    with _stop_on_signals(forward):
        while any(child.poll() is None for child in children):
            _show_progress(on_progress, engine, prepared, total)
            time.sleep(0.25)
    for child in children:
        output = child.stdout.read() if child.stdout is not None else ""
        if child.returncode != 0 or not output.strip():
            log.error("sending process %s exited with %s; its claims are released after the lease",
                      child.pid, child.returncode)
            continue
        stats.merge(json.loads(output.strip().splitlines()[-1]))
    _show_progress(on_progress, engine, prepared, total)
    return stats
