"""Sending claimed ledger rows: a pool of reused SMTP connections (or an outbox folder).

Correct first, fast second. Each connection sends MAIL, RCPT and DATA (pipelined when the relay allows),
then waits until the ledger has committed that the row reached the ``data`` phase (commits of all
connections are grouped), and only then writes the content. Outcomes by phase: a refused or dropped
connection before that is retried on a fresh connection; a refusal is read by its enhanced status code
(``replies.classify``): a bad address bounces the reader, a 4xx is deferred with exponential backoff and
jitter (failed after ``max_attempts`` or ``max_age_hours``), and a refusal that is not the reader's fault
(policy, relaying denied, authentication, the relay's system) halts the run with the row left retriable.
So does a session error (connection refused, TLS, AUTH, greeting, MAIL FROM), and so do ``breaker_threshold``
identical refusals in a row. A timeout, a dropped connection or a malformed reply once the content was sent
is ``ambiguous`` — never resent automatically. A row whose claim was taken over (this process stalled past
its lease) is not sent: the ledger refuses to mark it for DATA.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from aiosmtplib.errors import SMTPException, SMTPResponseException

from newsletter.clock import Clock
from newsletter.config import DeliverySettings
from newsletter.delivery.ledger_writer import LedgerWriter
from newsletter.delivery.replies import classify
from newsletter.delivery.transports import ClaimedMessage, FileTransport, SmtpTransport, TransportFactory
from newsletter.errors import ClaimLostError, DeliveryError, LedgerWriteError
from newsletter.storage.ledger import HALTED_PHASE, Delivery, Outcome, State

_T = TypeVar("_T")

log = logging.getLogger(__name__)

FRESH_CONNECTION_RETRIES = 3


@dataclass
class RunStats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    ambiguous: int = 0
    suppressed: int = 0
    """Claimed rows whose reader had left (unsubscribed, bounced) by claim time: not sent."""
    released: int = 0
    lost: int = 0
    """Rows not sent because another sender had taken their claim over (this one stalled past its lease)."""
    soft_bounced: int = 0
    """Refusals for a full mailbox (x.2.2): counted, and deferred like any temporary refusal."""
    bounced: list[int] = field(default_factory=list)
    halt: str | None = None
    """Why the run stopped early for a reason that is not the readers' fault (None: it did not)."""
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per state (deferred, failed): how many rows for each reply, so a summary can group them."""
    relay: str = ""
    """Where this run sent (host:port of the relay, or the outbox folder), for the summary."""
    interrupted: bool = False
    """A stop was requested (SIGINT/SIGTERM) before every due row was tried."""

    COUNTERS: ClassVar[tuple[str, ...]] = ("sent", "deferred", "failed", "ambiguous", "suppressed", "released",
                                           "lost", "soft_bounced")

    def add(self, outcome: Outcome) -> None:
        if outcome.state == "sent":
            self.sent += 1
        elif outcome.state == "deferred":
            self.deferred += 1
        elif outcome.state == "failed":
            self.failed += 1
        elif outcome.state == "ambiguous":
            self.ambiguous += 1
        elif outcome.state == "pending":
            self.released += 1
        if outcome.state in ("deferred", "failed") and outcome.message:
            group = self.reasons.setdefault(outcome.state, {})
            group[outcome.message] = group.get(outcome.message, 0) + 1

    def merge(self, other: Mapping[str, Any]) -> None:
        """Add the counts of another process's stats (its ``dataclasses.asdict``)."""
        for name in self.COUNTERS:
            setattr(self, name, getattr(self, name) + int(other.get(name, 0)))
        self.bounced.extend(int(i) for i in other.get("bounced", []))
        if self.halt is None and other.get("halt"):
            self.halt = str(other["halt"])
        self.relay = self.relay or str(other.get("relay") or "")
        self.interrupted = self.interrupted or bool(other.get("interrupted"))
        for state, group in dict(other.get("reasons") or {}).items():
            mine = self.reasons.setdefault(str(state), {})
            for reason, n in group.items():
                mine[str(reason)] = mine.get(str(reason), 0) + int(n)


class RateLimiter:
    """At most ``rate`` starts per second, evenly spaced; 0 disables it."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_age: timedelta
    base_seconds: float

    def defer_or_fail(self, delivery: Delivery, *, now: datetime, phase: str, code: int | None,
                      message: str) -> Outcome:
        attempts = delivery.attempts + 1
        if attempts >= self.max_attempts or now - delivery.created >= self.max_age:
            why = f"gave up after {attempts} attempts" if attempts >= self.max_attempts else "too old to retry"
            return Outcome(delivery_id=delivery.id, state="failed", phase=phase, code=code,
                           message=f"{message} ({why})", claim_token=delivery.claim_token)
        delay = self.base_seconds * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
        return Outcome(delivery_id=delivery.id, state="deferred", phase=phase, code=code, message=message,
                       next_attempt_at=now + timedelta(seconds=delay), claim_token=delivery.claim_token)


def _outcome(delivery: Delivery, state: State, **values: object) -> Outcome:
    return Outcome(delivery_id=delivery.id, state=state, claim_token=delivery.claim_token,
                   **values)  # type: ignore[arg-type]


class Pool:
    """``concurrency`` workers, each with its own reused connection, fed from one queue."""

    def __init__(
        self,
        *,
        settings: DeliverySettings,
        transport_factory: TransportFactory,
        writer: LedgerWriter,
        policy: RetryPolicy,
        clock: Clock,
        on_bounce: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.transport_factory = transport_factory
        self.writer = writer
        self.policy = policy
        self.clock = clock
        self.on_bounce = on_bounce
        self.queue: asyncio.Queue[ClaimedMessage | None] = asyncio.Queue()
        self.capacity = settings.claim_batch
        """At most this many messages wait on ``queue`` (``room_or``); the end-of-work markers are not counted."""
        self._low_water = max(1, self.capacity // 2)
        self._room = asyncio.Event()
        """Set by a worker when the queue, once full, is down to half: the claiming side may fill it again."""
        self._halt_seen = asyncio.Event()
        self.stats = RunStats()
        self.outstanding: dict[int, str] = {}
        """Rows queued or in flight (id → claim token): their leases are renewed while this process lives."""
        self.unstarted: dict[int, str] = {}
        """Rows taken from the queue after a halt, not tried: released by the caller."""
        self.relay = f"{settings.host}:{settings.port}" if settings.backend == "smtp" else settings.outbox
        self.stats.relay = self.relay
        self._domains: dict[str, asyncio.Semaphore] = {}
        self._limiter = RateLimiter(settings.rate_limit)
        self._workers: list[asyncio.Task[None]] = []
        self._streak: tuple[str, int] = ("", 0)
        self.stop: asyncio.Event | None = None
        """Set when a stop is requested (SIGTERM): messages not yet in DATA go back instead of being sent."""
        self._stop_watch: asyncio.Task[None] | None = None
        self._before_data: dict[asyncio.Task[Any], Callable[[], bool]] = {}
        """Connections' tasks inside a send, with whether their message has started DATA."""
        self._stop_cancels: set[asyncio.Task[Any]] = set()
        writer.on_failure = lambda failure: self.halt(str(failure))

    @property
    def halted(self) -> bool:
        return self.stats.halt is not None

    @property
    def stopping(self) -> bool:
        """A halt, or a stop request: no message that has not reached DATA is sent any more."""
        return self.halted or (self.stop is not None and self.stop.is_set())

    def halt(self, reason: str) -> None:
        """Stop the run: no more claims, queued rows go back; the first reason is the one reported."""
        if self.stats.halt is None:
            self.stats.halt = reason
            self._halt_seen.set()
            log.info("delivery stopped: %s", reason)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)]
        if self.stop is not None:
            self._stop_watch = asyncio.create_task(self._watch_stop(self.stop))

    async def room_or(self, stop: asyncio.Event) -> int:
        """Free places on the queue; when it is full, first wait (once, no polling) until the workers have
        emptied half of it. 0 when ``stop`` is set or the run halts first. This wait is the back-pressure:
        the claiming side goes as fast as the connections, and one wake-up serves half a queue of messages."""
        free = self.capacity - self.queue.qsize()
        if free > 0:
            return free
        self._room.clear()
        waits = [asyncio.ensure_future(self._room.wait()), asyncio.ensure_future(stop.wait()),
                 asyncio.ensure_future(self._halt_seen.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if stop.is_set() or self.halted:
            return 0
        return max(0, self.capacity - self.queue.qsize())

    def submit(self, claimed: ClaimedMessage) -> None:
        """Queue a message (into a place ``room_or`` counted)."""
        self.outstanding[claimed.delivery.id] = claimed.delivery.claim_token
        self.queue.put_nowait(claimed)

    def drain(self) -> dict[int, str]:
        """Take back queued messages no connection has started (a stop request or an error): id → claim token."""
        unstarted: dict[int, str] = {}
        while not self.queue.empty():
            claimed = self.queue.get_nowait()
            if claimed is not None:
                unstarted[claimed.delivery.id] = claimed.delivery.claim_token
                self.outstanding.pop(claimed.delivery.id, None)
        return unstarted

    async def finish(self) -> None:
        for _ in self._workers:
            self.queue.put_nowait(None)
        try:
            await asyncio.gather(*self._workers)
        finally:
            if self._stop_watch is not None:
                self._stop_watch.cancel()

    def _domain(self, address: str) -> asyncio.Semaphore:
        domain = address.rpartition("@")[2].lower()
        if domain not in self._domains:
            self._domains[domain] = asyncio.Semaphore(self.settings.per_domain_concurrency)
        return self._domains[domain]

    async def _work(self) -> None:
        transport = self.transport_factory()
        try:
            while (claimed := await self.queue.get()) is not None:
                if not self._room.is_set() and self.queue.qsize() <= self._low_water:
                    self._room.set()
                delivery = claimed.delivery
                if self.stopping:
                    self.unstarted[delivery.id] = delivery.claim_token
                    self.outstanding.pop(delivery.id, None)
                    continue
                outcome = await self._deliver(transport, claimed)
                if outcome is not None:
                    self.stats.add(outcome)
                    self.writer.add_outcome(outcome)
                self.outstanding.pop(delivery.id, None)
        finally:
            await transport.close()

    async def _deliver(self, transport: SmtpTransport | FileTransport, claimed: ClaimedMessage) -> Outcome | None:
        """Send one row; None when it is not this process's to record (its claim was lost, the ledger failed)."""
        delivery = claimed.delivery
        fresh_tries = 0
        while True:
            data_marked = marking = False

            async def mark_data() -> None:
                nonlocal data_marked, marking
                marking = True  # from here on the message may reach the relay: it is never handed back
                await self.writer.mark_data(delivery)
                data_marked = True

            async with self._domain(delivery.email):
                if self._limiter.interval:
                    await self._limiter.wait()
                if self.stopping:  # stopped while waiting for its domain's turn or the rate limit
                    self.unstarted[delivery.id] = delivery.claim_token
                    return None
                try:
                    sent = await self._unless_stopped(transport, transport.send(claimed, mark_data),
                                                      lambda: marking)  # noqa: B023 - used in this iteration
                    if sent is None:  # a stop came before DATA: given back, the relay discards the transaction
                        self.unstarted[delivery.id] = delivery.claim_token
                        return None
                    _, code, reply = sent
                    self._streak = ("", 0)
                    return _outcome(delivery, "sent", phase="data", code=code, message=reply[:200])
                except ClaimLostError:
                    await transport.drop()  # mid-transaction: closing makes the relay discard it
                    self.stats.lost += 1
                    log.warning("delivery %s to %s was taken over by another sender; not sent by this one",
                                delivery.id, delivery.email)
                    return None
                except LedgerWriteError as error:  # nothing more can be recorded
                    await transport.drop()
                    self.halt(str(error))
                    return None
                except DeliveryError as error:  # the sender address is unusable
                    await transport.drop()
                    return self._halted(delivery, str(error))
                except SMTPResponseException as error:
                    return await self._refused(transport, delivery, error, data_marked)
                except (SMTPException, OSError) as error:  # dropped, timed out, refused, TLS handshake
                    connecting = transport.phase == "connect"
                    await transport.drop()
                    reason = f"{type(error).__name__}: {error}"
                    if data_marked:
                        log.warning("delivery %s to %s is ambiguous: %s", delivery.id, delivery.email, reason)
                        return _outcome(delivery, "ambiguous", phase="data",
                                        message=f"connection lost after DATA: {reason}")
                    fresh_tries += 1
                    if fresh_tries <= FRESH_CONNECTION_RETRIES and not self.halted:
                        log.info("retrying delivery %s on a fresh connection: %s", delivery.id, reason)
                        continue
                    if connecting:
                        return self._halted(delivery, f"cannot open a session with the relay {self.relay}: {reason}")
                    return self.policy.defer_or_fail(delivery, now=self.clock(), phase=transport.phase, code=None,
                                                     message=reason)

    async def _unless_stopped(self, transport: SmtpTransport | FileTransport, sending: Coroutine[Any, Any, _T],
                              started_data: Callable[[], bool]) -> _T | None:
        """Await ``sending``, or abandon it (None) when a stop comes before it started DATA: however slow the
        relay, SIGTERM hands back every message not yet in DATA within a few seconds.

        It runs in the connection's own task, registered for the duration: the pool's one stop watcher
        (``_watch_stop``) cancels the tasks whose message has not started DATA. (A task and a wait on the stop
        event per message, as before, cost more CPU than building the message.)
        """
        if self.stop is None:
            return await sending
        if self.stop.is_set():
            sending.close()
            await transport.drop()
            return None
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a worker task
            raise RuntimeError("_unless_stopped outside a task")
        self._before_data[task] = started_data
        try:
            return await sending
        except asyncio.CancelledError:
            if task not in self._stop_cancels:
                raise
            self._stop_cancels.discard(task)
            if task.uncancel() > 0:  # cancelled for another reason too
                raise
        finally:
            self._before_data.pop(task, None)
        await transport.drop()
        return None

    async def _watch_stop(self, stop: asyncio.Event) -> None:
        """On a stop request, cancel every connection's send that has not started DATA (see ``_unless_stopped``)."""
        await stop.wait()
        for task, started_data in list(self._before_data.items()):
            if not started_data() and not task.done():
                self._stop_cancels.add(task)
                task.cancel()

    async def _refused(self, transport: SmtpTransport | FileTransport, delivery: Delivery,
                       error: SMTPResponseException, data_marked: bool) -> Outcome:
        code, reply = error.code, f"{error.code} {error.message}"
        phase = "data" if data_marked else transport.phase
        if code == 421 or phase == "connect":
            await transport.drop()
        else:
            await transport.reset()
        if data_marked and not 400 <= code < 600:  # a malformed reply to the content: the relay may have it
            log.warning("delivery %s to %s is ambiguous: %s", delivery.id, delivery.email, reply)
            return _outcome(delivery, "ambiguous", phase="data", code=None,
                            message=f"unreadable reply after DATA: {reply}")
        verdict = classify(code, error.message, phase=phase)
        if verdict.action == "halt":
            where = "the session" if phase in ("connect", "mail") else f"{phase.upper()} of {delivery.email}"
            return self._halted(delivery, f"{reply} (relay {self.relay}, in reply to {where})", code=code)
        if verdict.action == "bounce":
            self._streak = ("", 0)
            if self.on_bounce is not None:  # a database write (the subscriber's status): not on the event loop
                await asyncio.to_thread(self.on_bounce, delivery.subscriber_id, code, reply)
                self.stats.bounced.append(delivery.subscriber_id)
            return _outcome(delivery, "failed", phase=phase, code=code, message=reply)
        self._count_refusal(f"{code} {verdict.signature}", reply)
        if verdict.action == "soft_bounce":
            self.stats.soft_bounced += 1
        if verdict.action in ("defer", "soft_bounce"):
            return self.policy.defer_or_fail(delivery, now=self.clock(), phase=phase, code=code, message=reply)
        return _outcome(delivery, "failed", phase=phase, code=code, message=reply)

    def _halted(self, delivery: Delivery, reason: str, *, code: int | None = None) -> Outcome:
        """Halt the run; the row goes back to pending, not counted as an attempt, with the halt's reason.

        The reason stays on the row (phase ``HALTED_PHASE``) so that `send --workers`, which learns what its
        workers did only from the ledger, can stop and quote it.
        """
        self.halt(reason)
        return _outcome(delivery, "pending", phase=HALTED_PHASE, code=code, message=reason, count_attempt=False)

    def _count_refusal(self, signature: str, reply: str) -> None:
        """Circuit breaker: the same refusal for ``breaker_threshold`` recipients in a row is the relay's."""
        last, count = self._streak
        count = count + 1 if signature == last else 1
        self._streak = (signature, count)
        if count >= self.settings.breaker_threshold:
            self.halt(f"{count} recipients in a row refused with {reply} (relay {self.relay})")
