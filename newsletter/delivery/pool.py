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
import contextlib
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol

import aiosmtplib
from aiosmtplib.errors import (
    SMTPConnectError,
    SMTPException,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import Clock
from newsletter.config import DeliverySettings
from newsletter.delivery.replies import classify
from newsletter.delivery.smtp_session import SmtpSession
from newsletter.errors import ClaimLostError, DeliveryError, LedgerWriteError
from newsletter.storage.ledger import Delivery, Ledger, Outcome, State

log = logging.getLogger(__name__)

FRESH_CONNECTION_RETRIES = 3


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
        self._data: list[tuple[int, str]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._outcomes: list[Outcome] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failure: LedgerWriteError | None = None
        """Set once a write failed: every waiter, present and future, gets it, and nothing more is written
        (the rows stay claimed; their lease or a successor's dead-sender check frees them)."""
        self.on_failure: Callable[[LedgerWriteError], None] | None = None

    def start(self) -> None:
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
                        lost = self.ledger.record(data_phase=data, outcomes=outcomes, now=self.clock())
                    else:
                        lost = await asyncio.to_thread(self.ledger.record, data_phase=data, outcomes=outcomes,
                                                       now=self.clock())
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
        self._wake.set()
        if self._task is not None:
            await self._task


def one_line(error: BaseException) -> str:
    """A database error as one line: the driver's message, without the statement and parameters."""
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


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
    try:
        await smtp.connect()  # inside: a connect cancelled while waiting for the greeting must close its socket
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
        writer.on_failure = lambda failure: self.halt(str(failure))

    @property
    def halted(self) -> bool:
        return self.stats.halt is not None

    def halt(self, reason: str) -> None:
        """Stop the run: no more claims, queued rows go back; the first reason is the one reported."""
        if self.stats.halt is None:
            self.stats.halt = reason
            log.info("delivery stopped: %s", reason)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)]

    def submit(self, job: Job) -> None:
        self.outstanding[job.delivery.id] = job.delivery.claim_token
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
                delivery = job.delivery
                if self.halted:
                    self.unstarted[delivery.id] = delivery.claim_token
                    self.outstanding.pop(delivery.id, None)
                    continue
                outcome = await self._deliver(transport, job)
                if outcome is not None:
                    self.stats.add(outcome)
                    self.writer.add_outcome(outcome)
                self.outstanding.pop(delivery.id, None)
        finally:
            await transport.close()

    async def _deliver(self, transport: SmtpTransport | FileTransport, job: Job) -> Outcome | None:
        """Send one row; None when it is not this process's to record (its claim was lost, the ledger failed)."""
        delivery = job.delivery
        fresh_tries = 0
        while True:
            data_marked = False

            async def mark_data() -> None:
                nonlocal data_marked
                await self.writer.mark_data(delivery)
                data_marked = True

            async with self._domain(delivery.email):
                await self._limiter.wait()
                try:
                    _, code, reply = await transport.send(job, mark_data)
                    self._streak = ("", 0)
                    return _outcome(delivery, "sent", phase="data", code=code, message=reply[:200])
                except ClaimLostError:
                    await transport.drop()  # mid-transaction: closing makes the relay discard it
                    self.stats.lost += 1
                    log.warning("delivery %s to %s was taken over by another sender; not sent by this one",
                                delivery.id, delivery.email)
                    return None
                except DeliveryError as error:  # the ledger cannot be written, the sender address is unusable
                    await transport.drop()
                    self.halt(str(error))
                    return None
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
                        self.halt(f"cannot open a session with the relay {self.relay}: {reason}")
                        return _outcome(delivery, "pending", phase="", message=reason, count_attempt=False)
                    return self.policy.defer_or_fail(delivery, now=self.clock(), phase=transport.phase, code=None,
                                                     message=reason)

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
            self.halt(f"{reply} (relay {self.relay}, in reply to {where})")
            return _outcome(delivery, "pending", phase="", code=code, message=reply, count_attempt=False)
        if verdict.action == "bounce":
            self._streak = ("", 0)
            if self.on_bounce is not None:
                self.on_bounce(delivery.subscriber_id, code, reply)
                self.stats.bounced.append(delivery.subscriber_id)
            return _outcome(delivery, "failed", phase=phase, code=code, message=reply)
        self._count_refusal(f"{code} {verdict.signature}", reply)
        if verdict.action == "soft_bounce":
            self.stats.soft_bounced += 1
        if verdict.action in ("defer", "soft_bounce"):
            return self.policy.defer_or_fail(delivery, now=self.clock(), phase=phase, code=code, message=reply)
        return _outcome(delivery, "failed", phase=phase, code=code, message=reply)

    def _count_refusal(self, signature: str, reply: str) -> None:
        """Circuit breaker: the same refusal for ``breaker_threshold`` recipients in a row is the relay's."""
        last, count = self._streak
        count = count + 1 if signature == last else 1
        self._streak = (signature, count)
        if count >= self.settings.breaker_threshold:
            self.halt(f"{count} recipients in a row refused with {reply} (relay {self.relay})")
