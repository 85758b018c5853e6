"""One `newsletter send`: prepare the edition's ledger, then deliver it here or in several processes.

Stopping (SIGINT/SIGTERM) ends claiming, releases what was queued but not started, lets in-flight
messages finish, and returns; running `send` again resumes. Several processes share the work through
the ledger's atomic claims; the parent only watches the ledger to show progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from newsletter.campaign import Plan, PlannedVariant, Prepared, plan, prepare, sample_copy
from newsletter.config import Settings, load_settings
from newsletter.db import open_database
from newsletter.delivery import RunStats, send_single
from newsletter.edition_models import Frequency
from newsletter.edition_store import EditionStore
from newsletter.ledger import Ledger
from newsletter.links import signer_from_settings
from newsletter.sending import SendReport, deliver_edition, report, smtp_password

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    counts: dict[str, int]


ProgressCallback = Callable[[Progress], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    clock: Callable[[], datetime] = _utcnow,
    on_prepare: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
) -> SendReport:
    prepared = prepare(settings, engine, frequency=frequency, now=clock(), day=day,
                       signer=signer_from_settings(settings), progress=on_prepare)
    if prepared.edition.is_empty:
        return report(engine, prepared, RunStats(), now=clock())
    processes = processes or settings.delivery.processes
    if processes > 1 and settings.config_path.is_file():
        stats = _deliver_in_processes(settings, engine, prepared, processes=processes, limit=limit,
                                      on_progress=on_progress)
    else:
        stats = _deliver_here(settings, engine, prepared, limit=limit, clock=clock, on_progress=on_progress)
    return report(engine, prepared, stats, now=clock())


def _progress(engine: Engine, prepared: Prepared, total: int) -> Progress:
    counts = Ledger(engine).counts(prepared.edition.id)
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

        def progress(_: RunStats) -> None:
            nonlocal last
            if on_progress is not None and time.monotonic() - last > 0.25:
                last = time.monotonic()
                on_progress(_progress(engine, prepared, total))

        def request_stop() -> None:
            loop.call_soon_threadsafe(stop.set)

        with _stop_on_signals(request_stop):
            return await deliver_edition(settings, engine, prepared.edition, clock=clock, stop=stop, limit=limit,
                                         on_progress=progress)

    stats = asyncio.run(main())
    if on_progress is not None:
        on_progress(_progress(engine, prepared, total))
    return stats


def _child(config_path: str, edition_id: int, limit: int | None, results: multiprocessing.Queue[RunStats]) -> None:
    """One sending process: its own engine, pool and signal handling; reports its stats to the parent."""
    settings = load_settings(Path(config_path))
    engine = open_database(settings.newsletter.database_url)
    edition = EditionStore(engine).get_by_id(edition_id)
    assert edition is not None  # the parent built it before starting us

    async def main() -> RunStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        return await deliver_edition(settings, engine, edition, stop=stop, limit=limit)

    results.put(asyncio.run(main()))


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
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[RunStats] = context.Queue()
    share = None if limit is None else max(1, -(-limit // processes))
    children = [
        context.Process(target=_child, args=(str(settings.config_path), prepared.edition.id, share, results),
                        name=f"newsletter-send-{n}")
        for n in range(processes)
    ]
    for child in children:
        child.start()

    def forward(*_: object) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    with _stop_on_signals(forward):
        stats = RunStats()
        collected = 0
        while collected < len(children):
            if on_progress is not None:
                on_progress(_progress(engine, prepared, total))
            try:
                part = results.get(timeout=0.25)
            except queue.Empty:
                if not any(c.is_alive() for c in children) and results.empty():
                    break
                continue
            collected += 1
            for name in ("sent", "deferred", "failed", "ambiguous", "released"):
                setattr(stats, name, getattr(stats, name) + getattr(part, name))
            stats.bounced.extend(part.bounced)
        for child in children:
            child.join()
    if on_progress is not None:
        on_progress(_progress(engine, prepared, total))
    return stats


def send_test_copy(
    settings: Settings, engine: Engine, *, frequency: Frequency, to: str, day: date | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> tuple[Plan, PlannedVariant, str]:
    """`send --to`: the most common variant of the edition, to one address, without touching the ledger."""
    now = clock()
    planned = plan(settings, engine, frequency=frequency, now=now, day=day)
    chosen, message = sample_copy(settings, planned, to=to, signer=signer_from_settings(settings), now=now)
    where = asyncio.run(send_single(settings.delivery, sender=settings.newsletter.from_address, recipient=to,
                                    message=message, password=smtp_password(settings)))
    return planned, chosen, where
