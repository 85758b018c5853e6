"""One process's delivery of an edition's ledger: claimed rows go into a bounded queue the pool empties.

``EditionSender.run`` claims due rows in batches (``claim_batch``), builds each message and puts it on the
pool's queue, which holds at most ``claim_batch`` messages: when it is full the claiming side waits until the
workers have emptied half of it (or a stop, or a halt), so back-pressure costs no polling, one wake-up serves
half a queue, and never more than a batch and a queue of messages sit in memory. Rows claimed but not yet
queued keep their lease renewed like queued ones.

A stop request ends claiming; rows queued but not started, and rows claimed but not queued, are released at
once; rows in flight finish; the next run resumes. A halt (a session error, a refusal that is not the
readers' fault, a ledger that cannot be written) ends the run the same way and says why in
``RunStats.halt``.

No database call waits for a lock on the event loop: that would stall every connection. Calls run in
threads, except the ledger writer's SQLite commits, tried on the loop without waiting for any lock and handed
to its thread only when another process holds it (``ledger_writer``). ``build_message`` may read the
database the first time it meets a variant (as ``MessageFactory`` does), so the first row of each variant is
built in a thread, the others on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import Clock, utcnow, worker_name
from newsletter.config import DeliverySettings
from newsletter.delivery.claims import release_dead_claims, renew_leases
from newsletter.delivery.ledger_writer import LedgerWriter, one_line
from newsletter.delivery.pool import Pool, RetryPolicy, RunStats
from newsletter.delivery.transports import ClaimedMessage, FileTransport, SmtpTransport
from newsletter.storage.ledger import Delivery, Ledger

log = logging.getLogger(__name__)

MessageBuilder = Callable[[Delivery], bytes]
BounceHandler = Callable[[int, int, str], None]


class SendOptions(TypedDict, total=False):
    """What a caller may change about one run (all optional)."""

    active_subscribers: sa.Select[Any] | None
    """A subquery of active subscriber ids: rows of readers who left meanwhile are suppressed at claim time."""
    on_bounce: BounceHandler | None
    clock: Clock
    stop: asyncio.Event | None
    limit: int | None
    """Claim at most this many rows."""
    password: str | None
    on_progress: Callable[[RunStats], None] | None
    only: Collection[int] | None
    """Claim among these ledger rows alone (a worker's batch); those no longer due are left alone."""
    wire_ready: bool
    """``build_message`` already returns CRLF line ends and never a line starting with "." (as
    ``MessageFactory`` does), so the content is sent without a pass over it; otherwise it is normalised."""
    envelope_sender: Callable[[Delivery], str] | None


class EditionSender:
    """Claims, builds and queues one edition's due rows for a ``Pool``, then releases what it did not start."""

    def __init__(self, engine: Engine, *, settings: DeliverySettings, sender: str, edition_id: int,
                 build_message: MessageBuilder, options: SendOptions) -> None:
        self.settings = settings
        self.sender = sender
        self.edition_id = edition_id
        self.build_message = build_message
        self.options = options
        self.clock: Clock = options.get("clock", utcnow)
        self.stop = options.get("stop") or asyncio.Event()
        self.limit = options.get("limit")
        self.on_progress = options.get("on_progress")
        self.ledger = Ledger(engine, worker=worker_name())
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.writer = LedgerWriter(self.ledger, clock=self.clock)
        self.pool = Pool(
            settings=settings,
            transport_factory=self._transport,
            writer=self.writer,
            policy=RetryPolicy(settings.max_attempts, timedelta(hours=settings.max_age_hours),
                               settings.retry_base_seconds),
            clock=self.clock,
            on_bounce=options.get("on_bounce"),
        )
        self.pool.stop = self.stop  # a stop hands back every message not yet in DATA, queued or in flight
        self.held: dict[int, str] = {}
        """Rows claimed but not queued yet (id → claim token)."""
        self._built_variants: set[str] = set()
        self._free = 0
        """Places on the pool's queue counted free by the last ``room_or``."""

    def _transport(self) -> SmtpTransport | FileTransport:
        if self.settings.backend == "file":
            return FileTransport(Path(self.settings.outbox))
        return SmtpTransport(self.settings, sender=self.sender, password=self.options.get("password"),
                             wire_ready=self.options.get("wire_ready", False),
                             envelope_sender=self.options.get("envelope_sender"))

    def stopping(self) -> bool:
        return self.stop.is_set() or self.pool.halted

    async def run(self) -> RunStats:
        """Send every due row of the edition this process can claim; returns what this process did."""
        self.writer.start()
        self.pool.start()
        renewing = asyncio.create_task(renew_leases(self.ledger, self._live_claims, lease=self.lease,
                                                    clock=self.clock))
        finished_claiming = False
        ledger_failed = False
        try:
            try:
                await asyncio.to_thread(release_dead_claims, self.ledger, self.edition_id, now=self.clock())
                finished_claiming = await self._claim_all()
            except SQLAlchemyError as error:
                ledger_failed = True
                self.pool.halt(f"cannot use the delivery ledger: {one_line(error)}")
        finally:
            await self._finish(renewing, finished_claiming=finished_claiming, ledger_failed=ledger_failed)
        if self.on_progress is not None:
            self.on_progress(self.pool.stats)
        return self.pool.stats

    def _live_claims(self) -> set[str]:
        return {*self.pool.outstanding.values(), *self.held.values()}

    async def _claim_all(self) -> bool:
        """Claim and queue batches until nothing is due, the limit is reached or the run stops; True at the end
        of the work (not stopped)."""
        queued = 0
        active = self.options.get("active_subscribers")
        while not self.stopping() and (self.limit is None or queued < self.limit):
            size = self.settings.claim_batch if self.limit is None else min(self.settings.claim_batch,
                                                                           self.limit - queued)
            batch = await asyncio.to_thread(self.ledger.claim, self.edition_id, limit=size, now=self.clock(),
                                            lease=self.lease, only=self.options.get("only"))
            if not batch:
                break
            self.held.update((d.id, d.claim_token) for d in batch)
            if active is not None:
                suppressed = await asyncio.to_thread(
                    self.ledger.suppress_inactive, [d.id for d in batch], active_subscribers=active,
                    now=self.clock(), tokens={d.claim_token for d in batch},
                )
                batch = [d for d in batch if d.id not in suppressed]
                for row_id in suppressed:
                    self.held.pop(row_id, None)
                self.pool.stats.suppressed += len(suppressed)
            queued += len(batch)
            for delivery in batch:
                if not await self._queue(delivery):
                    return False
            if self.on_progress is not None:
                self.on_progress(self.pool.stats)
        return not self.stopping()

    async def _queue(self, delivery: Delivery) -> bool:
        """Build the row's message and wait for room on the pool's queue; False when the run stops first."""
        if delivery.variant_key in self._built_variants:
            message = self.build_message(delivery)
        else:  # the first of its variant: the builder reads that variant's template from the ledger
            message = await asyncio.to_thread(self.build_message, delivery)
            self._built_variants.add(delivery.variant_key)
        if self._free == 0:
            self._free = await self.pool.room_or(self.stop)
            if self._free == 0:
                return False
            if self.on_progress is not None:
                self.on_progress(self.pool.stats)  # between two waits for room: show how far the pool got
        self._free -= 1
        self.held.pop(delivery.id, None)
        self.pool.submit(ClaimedMessage(delivery, message))
        return True

    async def _finish(self, renewing: asyncio.Task[None], *, finished_claiming: bool, ledger_failed: bool) -> None:
        # After a stop, a halt or an error, queued rows no connection has started go back at once;
        # otherwise the workers empty the queue before they see the end-of-work markers.
        unstarted = self.pool.drain() if self.stopping() or not finished_claiming else {}
        unstarted.update(self.held)
        self.held.clear()
        await self.pool.finish()
        await self.writer.close()
        renewing.cancel()
        unstarted.update(self.pool.unstarted)
        if ledger_failed or self.writer.failure is not None:
            # Another write would wait out busy_timeout again, or fail the same way: the next sender on this
            # host takes the claims of this (then dead) process at once, elsewhere after the lease.
            log.info("left %d rows claimed: the ledger cannot be written",
                     len(unstarted) + len(self.pool.outstanding))
        elif unstarted:
            try:
                await asyncio.to_thread(self.ledger.release, unstarted, now=self.clock())
            except SQLAlchemyError as error:
                log.error("could not release %d claimed rows (%s); they are free once their lease lapses or "
                          "this process is gone", len(unstarted), one_line(error))
            self.pool.stats.released += len(unstarted)
        self.pool.stats.interrupted = self.stop.is_set() and (not finished_claiming or bool(unstarted))
