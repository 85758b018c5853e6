"""Group commit of the delivery ledger: every connection's "about to send DATA" mark and every outcome share
a few transactions, written by one task so that connections never wait on each other's commits.

A commit that may wait runs in one thread of the writer's own, never on the event loop: a write that waits
for a lock (SQLite's busy_timeout is 30 s) would otherwise stop every SMTP session, timeout and lease
renewal with it. On SQLite a commit is first tried on the loop without waiting for any lock, on a connection
the writer holds for the run (``storage.ledger_quick``), which is cheaper than the thread hop; if
another process holds the lock, nothing is written and the thread does it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import Clock
from newsletter.errors import ClaimLostError, LedgerWriteError
from newsletter.storage.ledger import Delivery, Ledger, Outcome
from newsletter.storage.ledger_quick import QuickRecorder

log = logging.getLogger(__name__)


class LedgerWriter:
    """Group commit: every connection's "about to send DATA" and every outcome share a few transactions.

    ``mark_data`` returns only once the row's DATA phase is committed; outcomes are written within
    ``outcome_delay`` seconds (or with the next DATA mark, whichever is first).
    """

    def __init__(self, ledger: Ledger, *, clock: Clock, outcome_delay: float = 0.05) -> None:
        self.ledger = ledger
        self.clock = clock
        self.outcome_delay = outcome_delay
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        """One thread for every commit that may wait: the marks and outcomes that arrive while a commit is in
        flight wait for the next one, so a slow commit makes the groups larger, not the writes more."""
        self._data: list[tuple[int, str]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._outcomes: list[Outcome] = []
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        """The pending wake-up for outcomes (``outcome_delay`` after the first one not yet committed)."""
        self._quick: QuickRecorder | None = None
        """SQLite: the connection the commits tried on the loop use, held for the run (``storage.ledger_quick``)."""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failure: LedgerWriteError | None = None
        """Set once a write failed: every waiter, present and future, gets it, and nothing more is written
        (the rows stay claimed; their lease or a successor's dead-sender check frees them)."""
        self.on_failure: Callable[[LedgerWriteError], None] | None = None

    def start(self) -> None:
        try:
            self._quick = QuickRecorder.open(self.ledger)
        except SQLAlchemyError as error:  # every commit goes to the thread, where a failure ends the run as usual
            log.info("ledger commits cannot be tried on the event loop: %s", one_line(error))
        self._task = asyncio.create_task(self._run())

    async def mark_data(self, delivery: Delivery) -> None:
        """Return once the row's DATA phase is committed under this process's claim.

        Raises ClaimLostError if the row is no longer claimed by this process (do not send it), and
        LedgerWriteError if the ledger cannot be written.
        """
        if self.failure is not None:
            raise self.failure
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._data.append((delivery.id, delivery.claim_token))
        self._waiters.append(future)
        self._wake.set()
        await future

    def add_outcome(self, outcome: Outcome) -> None:
        if self.failure is not None:
            return
        self._outcomes.append(outcome)
        if not self._wake.is_set() and self._timer is None:  # one timer for all outcomes waiting, not one each
            self._timer = asyncio.get_running_loop().call_later(self.outcome_delay, self._outcomes_due)

    def _outcomes_due(self) -> None:
        self._timer = None
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # one more pass of the loop: marks due in it join this commit (fewer, larger)
            self._wake.clear()
            data, waiters, outcomes = self._data, self._waiters, self._outcomes
            self._data, self._waiters, self._outcomes = [], [], []
            if data or outcomes:
                try:
                    # On the loop only when it cannot wait (a local SQLite commit, well under a millisecond:
                    # a thread hop for every one cost 13 % of two processes' throughput, docs/benchmarks.md).
                    lost = None
                    if self._quick is not None:
                        lost = self._quick.try_record(data_phase=data, outcomes=outcomes, now=self.clock())
                    if lost is None:
                        write = functools.partial(self.ledger.record, data_phase=data, outcomes=outcomes,
                                                  now=self.clock())
                        lost = await asyncio.get_running_loop().run_in_executor(self._thread, write)
                except SQLAlchemyError as error:
                    self._fail(LedgerWriteError(f"cannot write the delivery ledger: {one_line(error)}"), waiters)
                    return
                for waiter, (row_id, _) in zip(waiters, data, strict=True):
                    if waiter.done():
                        continue
                    if row_id in lost:
                        waiter.set_exception(ClaimLostError(row_id))
                    else:
                        waiter.set_result(None)
            if self._closing and not (self._data or self._outcomes):
                return

    def _fail(self, failure: LedgerWriteError, waiters: list[asyncio.Future[None]]) -> None:
        self.failure = failure
        for waiter in [*waiters, *self._waiters]:
            if not waiter.done():
                waiter.set_exception(failure)
        self._data, self._waiters, self._outcomes = [], [], []
        log.info("%s", failure)
        if self.on_failure is not None:
            self.on_failure(failure)

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake.set()
        try:
            if self._task is not None:
                await self._task
        finally:
            self._thread.shutdown(wait=False)  # idle by now (or the task was cancelled): never join on the loop
            if self._quick is not None:
                self._quick.close()
                self._quick = None


def one_line(error: BaseException) -> str:
    """A database error as one line: the driver's message, without the statement and parameters."""
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]
