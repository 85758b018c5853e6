"""Sending claimed ledger rows: a pool of reused SMTP connections (or an outbox folder).

Correct first, fast second. Each connection sends MAIL, RCPT and DATA (pipelined when the relay allows),
then waits until the ledger has committed that the row reached the ``data`` phase (commits of all
connections are grouped), and only then writes the content. Outcomes by phase: a refused or dropped
connection before that is retried on a fresh connection; a 4xx anywhere is deferred with exponential
backoff and jitter (failed after ``max_attempts`` or ``max_age_hours``); a 5xx is failed, and a 5.1.x-type
recipient refusal also marks the subscriber bounced; a timeout or a dropped connection once the content
was sent is ``ambiguous`` — never resent automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar, Protocol

import aiosmtplib
from aiosmtplib.errors import (
    SMTPConnectError,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import DeliverySettings
from newsletter.delivery.smtp_session import SmtpSession
from newsletter.errors import DeliveryError
from newsletter.storage.ledger import Delivery, Ledger, Outcome

log = logging.getLogger(__name__)

FRESH_CONNECTION_RETRIES = 3
_BOUNCE_STATUS = re.compile(r"\b5\.1\.\d+\b")
_BOUNCE_CODES = frozenset({550, 551, 553})


@dataclass(frozen=True)
class Job:
    delivery: Delivery
    message: bytes


@dataclass
class RunStats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    ambiguous: int = 0
    suppressed: int = 0
    """Claimed rows whose reader had left (unsubscribed, bounced) by claim time: not sent."""
    released: int = 0
    bounced: list[int] = field(default_factory=list)

    COUNTERS: ClassVar[tuple[str, ...]] = ("sent", "deferred", "failed", "ambiguous", "suppressed", "released")

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


Clock = Callable[[], datetime]


class LedgerWriter:
    """Group commit: every connection's "about to send DATA" and every outcome share a few transactions.

    ``mark_data`` returns only once the row's DATA phase is committed; outcomes are written within
    ``outcome_delay`` seconds (or with the next DATA mark, whichever is first).
    """

    def __init__(self, ledger: Ledger, *, clock: Clock, outcome_delay: float = 0.05) -> None:
        self.ledger = ledger
        self.clock = clock
        self.outcome_delay = outcome_delay
        self.inline = ledger.engine.dialect.name == "sqlite"
        """SQLite commits on the event loop's own thread: a local commit of a few rows takes ~0.3 ms, less
        than handing it to a thread, whose every return waits for the GIL (up to 5 ms while the loop is
        busy) and so held every connection's DATA back. A database over the network keeps its thread."""
        self._data: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._outcomes: list[Outcome] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def mark_data(self, delivery_id: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._data.append(delivery_id)
        self._waiters.append(future)
        self._wake.set()
        await future

    def add_outcome(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        if not self._wake.is_set():
            asyncio.get_running_loop().call_later(self.outcome_delay, self._wake.set)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            data, waiters, outcomes = self._data, self._waiters, self._outcomes
            self._data, self._waiters, self._outcomes = [], [], []
            if data or outcomes:
                try:
                    if self.inline:
                        self.ledger.record(data_phase=data, outcomes=outcomes, now=self.clock())
                    else:
                        await asyncio.to_thread(self.ledger.record, data_phase=data, outcomes=outcomes,
                                                now=self.clock())
                except SQLAlchemyError as error:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(DeliveryError(f"cannot write the delivery ledger: {error}"))
                    raise
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            if self._closing and not (self._data or self._outcomes):
                return

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task


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


class Transport(Protocol):
    """Sends one message; the pool gives each worker its own transport (one SMTP connection)."""

    async def send(self, job: Job, mark_data: Callable[[], Awaitable[None]]) -> tuple[str, int | None, str]:
        """Return (phase reached, SMTP code, reply text); raise for failures classified by ``classify``."""
        ...

    async def close(self) -> None: ...


async def connect(settings: DeliverySettings, *, password: str | None) -> aiosmtplib.SMTP:
    """A connection to the relay, with STARTTLS or implicit TLS and AUTH as configured."""
    smtp = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        timeout=settings.timeout_seconds,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        cert_bundle=settings.ca_file or None,
    )
    await smtp.connect()
    try:
        if smtp.is_ehlo_or_helo_needed:  # STARTTLS and AUTH greet; a plain connection has not yet
            try:
                await smtp.ehlo()
            except SMTPHeloError:
                await smtp.helo()
        if settings.username:
            await smtp.login(settings.username, password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


async def send_single(settings: DeliverySettings, *, sender: str, recipient: str, message: bytes,
                      password: str | None) -> str:
    """One message outside the ledger (`send --to`): returns where it went."""
    if settings.backend == "file":
        folder = Path(settings.outbox)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"single-{int(time.time())}-{uuid.uuid4().hex[:8]}.eml"
        target.write_bytes(message)
        return str(target)
    try:
        smtp = await connect(settings, password=password)
        try:
            response = await smtp.sendmail(sender, [recipient], message)
        finally:
            smtp.close()
    except (SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError, SMTPConnectError, OSError) as error:
        raise DeliveryError(f"test copy to {recipient} failed: {type(error).__name__}: {error}") from None
    return f"{settings.host}:{settings.port} ({response[1]})"


class SmtpTransport:
    """One worker's connection: opened by aiosmtplib, then driven by :class:`SmtpSession` (pipelined)."""

    def __init__(self, settings: DeliverySettings, *, sender: str, password: str | None,
                 wire_ready: bool = False, envelope_sender: Callable[[Delivery], str] | None = None) -> None:
        self.settings = settings
        self.sender = sender
        self.envelope_sender = envelope_sender
        """Each message's own MAIL FROM (VERP), when given; else ``sender`` for all."""
        self.password = password
        self.wire_ready = wire_ready
        """The messages already have CRLF line ends and no line starting with a dot (``MessageFactory``'s do)."""
        self.session: SmtpSession | None = None
        self.phase = "connect"

    async def send(self, job: Job, mark_data: Callable[[], Awaitable[None]]) -> tuple[str, int | None, str]:
        self.phase = "connect"
        if self.session is None or self.session.closed:
            smtp = await connect(self.settings, password=self.password)
            try:
                self.session = SmtpSession(smtp, sender=self.sender, timeout=self.settings.timeout_seconds)
            except BaseException:
                smtp.close()
                raise
        session = self.session
        message = job.message if self.wire_ready else wire_form(job.message)
        try:
            own = self.envelope_sender(job.delivery) if self.envelope_sender is not None else None
            response = await session.send(job.delivery.email, message, mark_data, sender=own)
        finally:
            self.phase = session.phase
        return "data", response.code, response.message

    async def reset(self) -> None:
        """After an error reply: RSET keeps the connection; if that fails, drop it."""
        if self.session is not None and not self.session.closed:
            try:
                await self.session.reset()
            except (SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError, OSError):
                await self.drop()

    async def drop(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = None

    async def close(self) -> None:
        if self.session is not None and not self.session.closed:
            with contextlib.suppress(SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError, OSError):
                await self.session.quit()
        await self.drop()


def wire_form(message: bytes) -> bytes:
    """Any message as it must travel after DATA: CRLF line ends, a line starting with "." doubled (RFC 5321)."""
    lines = re.split(rb"\r\n|\r|\n", message)
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


class FileTransport:
    """The `file` backend: each message becomes an .eml file, written atomically, for trials."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.phase = "connect"

    async def send(self, job: Job, mark_data: Callable[[], Awaitable[None]]) -> tuple[str, int | None, str]:
        await mark_data()
        self.phase = "data"
        d = job.delivery
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"edition-{d.edition_id}-subscriber-{d.subscriber_id}.eml"
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        temporary.write_bytes(job.message)
        temporary.replace(target)
        return "data", 250, f"written to {target}"

    async def reset(self) -> None:
        return None

    async def drop(self) -> None:
        return None

    async def close(self) -> None:
        return None


def is_bounce(code: int, message: str, phase: str) -> bool:
    """A permanent refusal of the recipient itself (5.1.x: no such user, bad address)."""
    return phase == "rcpt" and (bool(_BOUNCE_STATUS.search(message)) or code in _BOUNCE_CODES)


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
                           message=f"{message} ({why})")
        delay = self.base_seconds * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
        return Outcome(delivery_id=delivery.id, state="deferred", phase=phase, code=code, message=message,
                       next_attempt_at=now + timedelta(seconds=delay))


TransportFactory = Callable[[], "SmtpTransport | FileTransport"]


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
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self.stats = RunStats()
        self.outstanding: set[int] = set()
        """Rows queued or in flight: their leases are renewed while this process lives."""
        self._domains: dict[str, asyncio.Semaphore] = {}
        self._limiter = RateLimiter(settings.rate_limit)
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)]

    def submit(self, job: Job) -> None:
        self.outstanding.add(job.delivery.id)
        self.queue.put_nowait(job)

    async def finish(self) -> None:
        for _ in self._workers:
            self.queue.put_nowait(None)
        await asyncio.gather(*self._workers)

    def _domain(self, address: str) -> asyncio.Semaphore:
        domain = address.rpartition("@")[2].lower()
        if domain not in self._domains:
            self._domains[domain] = asyncio.Semaphore(self.settings.per_domain_concurrency)
        return self._domains[domain]

    async def _work(self) -> None:
        transport = self.transport_factory()
        try:
            while (job := await self.queue.get()) is not None:
                outcome = await self._deliver(transport, job)
                self.stats.add(outcome)
                self.writer.add_outcome(outcome)
                self.outstanding.discard(job.delivery.id)
        finally:
            await transport.close()

    async def _deliver(self, transport: SmtpTransport | FileTransport, job: Job) -> Outcome:
        delivery = job.delivery
        fresh_tries = 0
        while True:
            data_marked = False

            async def mark_data() -> None:
                nonlocal data_marked
                await self.writer.mark_data(delivery.id)
                data_marked = True

            async with self._domain(delivery.email):
                await self._limiter.wait()
                try:
                    _, code, reply = await transport.send(job, mark_data)
                    return Outcome(delivery_id=delivery.id, state="sent", phase="data", code=code,
                                   message=reply[:200])
                except SMTPResponseException as error:
                    return await self._refused(transport, delivery, error, data_marked)
                except (SMTPServerDisconnected, SMTPTimeoutError, SMTPConnectError, OSError) as error:
                    await transport.drop()
                    reason = f"{type(error).__name__}: {error}"
                    if data_marked:
                        log.warning("delivery %s to %s is ambiguous: %s", delivery.id, delivery.email, reason)
                        return Outcome(delivery_id=delivery.id, state="ambiguous", phase="data",
                                       message=f"connection lost after DATA: {reason}")
                    fresh_tries += 1
                    if fresh_tries <= FRESH_CONNECTION_RETRIES:
                        log.info("retrying delivery %s on a fresh connection: %s", delivery.id, reason)
                        continue
                    return self.policy.defer_or_fail(delivery, now=self.clock(), phase=transport.phase, code=None,
                                                     message=reason)

    async def _refused(self, transport: SmtpTransport | FileTransport, delivery: Delivery,
                       error: SMTPResponseException, data_marked: bool) -> Outcome:
        code, reply = error.code, f"{error.code} {error.message}"
        phase = "data" if data_marked else transport.phase
        if code == 421:
            await transport.drop()
        else:
            await transport.reset()
        if 400 <= code < 500:
            return self.policy.defer_or_fail(delivery, now=self.clock(), phase=phase, code=code, message=reply)
        if is_bounce(code, reply, phase) and self.on_bounce is not None:
            self.on_bounce(delivery.subscriber_id, code, reply)
            self.stats.bounced.append(delivery.subscriber_id)
        return Outcome(delivery_id=delivery.id, state="failed", phase=phase, code=code, message=reply)
