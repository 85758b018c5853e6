"""Delivering one edition's ledger: claim due rows in batches, send them through the pool, record outcomes.

Any number of these loops may run at once (one per process and core, or one per worker machine): the
ledger's atomic claims split the work. A stop request (SIGINT/SIGTERM) ends claiming; rows already
queued but not started are released at once, rows in flight finish, and the next run resumes. A halt
(a session error, a refusal that is not the readers' fault, a ledger that cannot be written) ends the
run the same way and says why in ``RunStats.halt``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import Clock, utcnow, worker_name
from newsletter.config import DeliverySettings, Settings
from newsletter.delivery.dkim import DkimSigner
from newsletter.delivery.envelope import verp_sender
from newsletter.delivery.ledger_writer import LedgerWriter, one_line
from newsletter.delivery.outgoing import MessageFactory
from newsletter.delivery.pool import Pool, RetryPolicy, RunStats
from newsletter.delivery.transports import ClaimedMessage, FileTransport, SmtpTransport
from newsletter.errors import ConfigError
from newsletter.records.editions import Edition, Prepared
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.ledger import Delivery, Ledger
from subscribers.store import SubscriberStore

log = logging.getLogger(__name__)

MessageBuilder = Callable[[Delivery], bytes]
BounceHandler = Callable[[int, int, str], None]


async def deliver(
    engine: Engine,
    *,
    settings: DeliverySettings,
    sender: str,
    edition_id: int,
    build_message: MessageBuilder,
    active_subscribers: sa.Select[Any] | None = None,
    on_bounce: BounceHandler | None = None,
    clock: Clock = utcnow,
    stop: asyncio.Event | None = None,
    limit: int | None = None,
    password: str | None = None,
    on_progress: Callable[[RunStats], None] | None = None,
    only: Collection[int] | None = None,
    wire_ready: bool = False,
    envelope_sender: Callable[[Delivery], str] | None = None,
) -> RunStats:
    """Send every due row of the edition this process can claim; returns what this process did.

    ``only``: claim among these ledger rows alone (a worker's batch); those no longer due are left alone.
    ``wire_ready``: ``build_message`` already returns CRLF line ends and never a line starting with "." (as
    ``MessageFactory`` does), so the content is sent without a pass over it; otherwise it is normalised.

    No database call waits for a lock on the event loop: that would stall every connection. Calls run in
    threads, except the ledger writer's SQLite commits, tried on the loop without waiting for any lock and
    handed to its thread only when another process holds it (``ledger_writer``). ``build_message`` may
    read the database the first time it meets a variant (as ``MessageFactory`` does), so the first row of
    each variant is built in a thread, the others on the loop.
    """
    ledger = Ledger(engine, worker=worker_name())
    stop = stop or asyncio.Event()
    lease = timedelta(seconds=settings.lease_seconds)
    writer = LedgerWriter(ledger, clock=clock)
    writer.start()

    def stopping() -> bool:
        return stop.is_set() or pool.halted

    def transport() -> SmtpTransport | FileTransport:
        if settings.backend == "file":
            return FileTransport(Path(settings.outbox))
        return SmtpTransport(settings, sender=sender, password=password, wire_ready=wire_ready,
                             envelope_sender=envelope_sender)

    pool = Pool(
        settings=settings,
        transport_factory=transport,
        writer=writer,
        policy=RetryPolicy(settings.max_attempts, timedelta(hours=settings.max_age_hours), settings.retry_base_seconds),
        clock=clock,
        on_bounce=on_bounce,
    )
    pool.start()
    renewing = asyncio.create_task(_renew_leases(ledger, pool, lease=lease, clock=clock))
    queued = 0
    low_water = max(1, settings.claim_batch // 2)
    finished_claiming = False
    ledger_failed = False
    built_variants: set[str] = set()
    try:
        try:
            await asyncio.to_thread(_release_dead_claims, ledger, edition_id, now=clock())
            while not stopping() and (limit is None or queued < limit):
                size = settings.claim_batch if limit is None else min(settings.claim_batch, limit - queued)
                batch = await asyncio.to_thread(ledger.claim, edition_id, limit=size, now=clock(), lease=lease,
                                                only=only)
                if not batch:
                    break
                if active_subscribers is not None:
                    suppressed = await asyncio.to_thread(
                        ledger.suppress_inactive, [d.id for d in batch], active_subscribers=active_subscribers,
                        now=clock(), tokens={d.claim_token for d in batch},
                    )
                    batch = [d for d in batch if d.id not in suppressed]
                    pool.stats.suppressed += len(suppressed)
                for delivery in batch:
                    if delivery.variant_key in built_variants:
                        message = build_message(delivery)
                    else:  # the first of its variant: the builder reads that variant's template from the ledger
                        message = await asyncio.to_thread(build_message, delivery)
                        built_variants.add(delivery.variant_key)
                    pool.submit(ClaimedMessage(delivery, message))
                queued += len(batch)
                while pool.queue.qsize() > low_water and not stopping():
                    if on_progress is not None:
                        on_progress(pool.stats)
                    await asyncio.sleep(0.02)
            finished_claiming = not stopping()
        except SQLAlchemyError as error:
            ledger_failed = True
            pool.halt(f"cannot use the delivery ledger: {one_line(error)}")
    finally:
        # After a stop, a halt or an error, queued rows no connection has started go back at once;
        # otherwise the workers empty the queue before they see the end-of-work markers.
        unstarted = _drain(pool) if stopping() or not finished_claiming else {}
        await pool.finish()
        await writer.close()
        renewing.cancel()
        unstarted.update(pool.unstarted)
        if ledger_failed or writer.failure is not None:
            # Another write would wait out busy_timeout again, or fail the same way: the next sender on this
            # host takes the claims of this (then dead) process at once, elsewhere after the lease.
            log.info("left %d rows claimed: the ledger cannot be written", len(unstarted) + len(pool.outstanding))
        elif unstarted:
            try:
                await asyncio.to_thread(ledger.release, unstarted, now=clock())
            except SQLAlchemyError as error:
                log.error("could not release %d claimed rows (%s); they are free once their lease lapses or "
                          "this process is gone", len(unstarted), one_line(error))
            pool.stats.released += len(unstarted)
        pool.stats.interrupted = stop.is_set() and not finished_claiming
    if on_progress is not None:
        on_progress(pool.stats)
    return pool.stats


def _drain(pool: Pool) -> dict[int, str]:
    """Take back queued messages no connection has started (a stop request or an error): id → claim token."""
    unstarted: dict[int, str] = {}
    while not pool.queue.empty():
        claimed = pool.queue.get_nowait()
        if claimed is not None:
            unstarted[claimed.delivery.id] = claimed.delivery.claim_token
            pool.outstanding.pop(claimed.delivery.id, None)
    return unstarted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def dead_senders(workers: Collection[str]) -> list[str]:
    """Of these senders (host:pid), those provably dead: on this host, and no process has that pid."""
    host = socket.gethostname()
    dead = []
    for worker in workers:
        where, _, pid = worker.rpartition(":")
        if where == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            dead.append(worker)
    return dead


def _release_dead_claims(ledger: Ledger, edition_id: int, *, now: datetime) -> tuple[int, int]:
    """Free lapsed claims, and at once those of senders of this host that died (a resume after a crash)."""
    dead = dead_senders(ledger.claim_holders(edition_id))
    if dead:
        log.info("releasing the claims of dead senders %s", ", ".join(sorted(dead)))
    return ledger.release_expired(edition_id, now=now, dead_workers=dead)


async def _renew_leases(ledger: Ledger, pool: Pool, *, lease: timedelta, clock: Clock) -> None:
    """A live sender keeps its claims: only a dead process's claims ever expire.

    A failed renewal is logged and tried again at the next tick: if the lease lapses meanwhile, fencing
    makes sure a row another sender took over is not sent by this one.
    """
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        try:
            await asyncio.to_thread(ledger.renew, set(pool.outstanding.values()), until=clock() + lease)
        except SQLAlchemyError as error:
            log.warning("could not renew the claims' lease (%s); trying again", one_line(error))


# --- one `send`: prepare the ledger, then deliver it (in this process or in several) ----------------------


@dataclass
class SendReport:
    """What `newsletter send` prints at the end."""

    prepared: Prepared
    stats: RunStats
    counts: dict[str, int]
    ambiguous: list[dict[str, Any]]
    live_claims: int
    workers: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per sending process or worker (host:pid): its rows by state."""
    enqueued: int | None = None
    """With `--workers`: rows handed to the workers (None when this process sent)."""
    requeued: int = 0
    """With `--workers`: rows enqueued again because their task was gone (a worker died)."""
    waited: bool = True
    """With `--workers`: False when `send` stopped following the workers before every row was tried
    (`--no-wait`, or a signal); the counts are those of that moment and the workers go on."""


def smtp_password(settings: Settings) -> str | None:
    delivery = settings.delivery
    if not delivery.username:
        return None
    password = os.environ.get(delivery.password_env)
    if password is None:
        raise ConfigError(
            f"delivery.username is set but the environment variable {delivery.password_env} "
            "(delivery.password_env) holding the SMTP password is not"
        )
    return password


def message_factory(settings: Settings, engine: Engine, edition: Edition, *, clock: Clock) -> MessageFactory:
    dkim = DkimSigner(settings.delivery.dkim) if settings.delivery.dkim else None
    return MessageFactory(settings=settings, ledger=Ledger(engine), signer=signer_from_settings(settings),
                          edition=edition, clock=clock, dkim=dkim)


async def deliver_edition(
    settings: Settings,
    engine: Engine,
    edition: Edition,
    *,
    clock: Clock = utcnow,
    stop: asyncio.Event | None = None,
    limit: int | None = None,
    on_progress: Callable[[RunStats], None] | None = None,
    only: Collection[int] | None = None,
    factory: MessageFactory | None = None,
) -> RunStats:
    """Deliver the edition's ledger from this process, with the configured transport and message factory."""
    factory = factory or message_factory(settings, engine, edition, clock=clock)
    subscribers = SubscriberStore(engine)

    def bounce(subscriber_id: int, code: int, reply: str) -> None:
        if subscribers.mark_bounced(subscriber_id, now=clock()):
            log.warning("subscriber %s marked bounced: %s", subscriber_id, reply)

    return await deliver(
        engine,
        settings=settings.delivery,
        sender=settings.newsletter.from_address,
        envelope_sender=verp_sender(settings),
        edition_id=edition.id,
        build_message=factory.build,
        active_subscribers=subscribers.active_ids(),
        on_bounce=bounce,
        clock=clock,
        stop=stop,
        limit=limit,
        password=smtp_password(settings),
        on_progress=on_progress,
        only=only,
        wire_ready=True,
    )


async def deliver_rows(
    settings: Settings,
    engine: Engine,
    edition: Edition,
    ids: Collection[int],
    *,
    factory: MessageFactory | None = None,
    clock: Clock = utcnow,
    stop: asyncio.Event | None = None,
) -> RunStats:
    """Deliver exactly these ledger rows (a worker's batch) with the same pool and ledger rules as `send`.

    Only rows still pending, or deferred and due, are claimed (atomically): delivering the same batch again
    (a redelivered task) sends nothing twice. Rows of the batch that another claim still holds are left to
    it; ``Ledger.held_until`` tells the caller when that claim lapses.
    """
    return await deliver_edition(settings, engine, edition, clock=clock, stop=stop, only=ids, factory=factory)


def report(engine: Engine, prepared: Prepared, stats: RunStats, *, now: datetime) -> SendReport:
    ledger = Ledger(engine)
    edition_id = prepared.edition.id
    return SendReport(
        prepared=prepared,
        stats=stats,
        counts=ledger.counts(edition_id) if not prepared.edition.is_empty else {},
        ambiguous=[
            {"email": r["email"], "message": r["last_message"], "message_id": r["message_id"]}
            for r in ledger.rows(edition_id, state="ambiguous")
        ],
        live_claims=ledger.live_claims(edition_id, now=now),
        workers=ledger.by_worker(edition_id) if not prepared.edition.is_empty else {},
    )
