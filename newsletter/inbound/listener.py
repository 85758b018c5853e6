"""The SMTP/LMTP door: an aiosmtpd listener that Postfix (or an MX) hands the bounce domain's mail to.

Nothing is lost and nothing is open:

* a message is answered 250 only after :class:`InboundProcessor` has committed its effect; a database
  failure answers 451, so the sending MTA keeps the message and tries again (a retry after a commit whose
  250 was lost is recognised and acts no more);
* mail that cannot be parsed is committed to quarantine, then acknowledged: it is kept and counted, and
  retrying it would not help;
* recipients outside ``[inbound] domain`` are refused (550 5.7.1: no relaying), messages above
  ``max_message_bytes`` are refused (552), and a client IP sending more than ``rate_limit_per_minute``
  messages is told to come back later (450);
* messages are classified and applied in batches, one batch at a time on one worker thread, never on the
  event loop: the messages that arrived while the previous batch was being processed (up to ``BATCH_MAX``)
  go together into one transaction (``InboundProcessor.handle_batch``), and each is answered after that
  commit. One message alone is a batch of one, so a quiet listener answers at once; a bounce storm costs one
  commit per batch instead of one per message. Each message costs under a second of CPU (``bounds``), and
  a burst of hostile ones waits its turn on one core instead of taking both from the web pages and the
  scheduler that share the process in ``serve``. When a batch cannot be committed, its messages are tried
  again one by one, so one message that breaks the transaction is the only one answered 451. More than
  ``MAX_RECIPIENTS`` recipients in one transaction get 452 (each may carry a token to verify), and connections past
  ``MAX_CONNECTIONS`` (or ``MAX_CONNECTIONS_PER_IP`` from one address) get 421 and are closed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import InboundSettings
from newsletter.errors import NewsletterError
from newsletter.inbound.process import InboundProcessor, Incoming, Outcome

log = logging.getLogger("newsletter.inbound")

PROCESSING_AT_ONCE = 1
"""Batches processed at once (each on one worker thread)."""
BATCH_MAX = 200
"""Most messages in one batch, one transaction: a storm's backlog is committed in a few hundred at a time."""
MAX_RECIPIENTS = 100
MAX_CONNECTIONS = 500
MAX_CONNECTIONS_PER_IP = 50
"""Open SMTP/LMTP connections, in all and from one address (a local Postfix opens up to 20 by default);
past them a connection is told ``421`` and closed at once, so idle connections cannot use up file handles."""


class InboundHandler:
    """aiosmtpd handler: checks each recipient, rate-limits, and answers DATA after the commit."""

    def __init__(self, processor: InboundProcessor, settings: InboundSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processor = processor
        self.settings = settings
        self.clock = clock
        self._recent: dict[str, collections.deque[float]] = {}
        self.lmtp = settings.protocol == "lmtp"
        self._processing = asyncio.Semaphore(PROCESSING_AT_ONCE)
        self._waiting: list[tuple[Incoming, asyncio.Future[Outcome]]] = []

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        peer = str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer)
        now = self.clock()
        if len(self._recent) > 10_000:  # forget clients quiet for a minute, so the table cannot grow without end
            self._recent = {ip: w for ip, w in self._recent.items() if w and w[-1] > now - 60}
        window = self._recent.setdefault(peer, collections.deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.settings.rate_limit_per_minute:
            return "450 4.7.1 too many messages from your address; try again later"
        window.append(now)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        _, _, domain = address.rpartition("@")
        if domain.lower() != self.settings.domain.lower():
            return "550 5.7.1 relay access denied: this server only takes mail for its own domain"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or (envelope.content if isinstance(envelope.content, bytes) else b"")
        recipients = list(envelope.rcpt_tos)
        try:
            outcome = await self._process(Incoming(raw=raw, recipients=tuple(recipients),
                                                   door="lmtp" if self.lmtp else "smtp"))
        except (SQLAlchemyError, NewsletterError, OSError) as error:
            log.error("inbound message from %s not stored, deferred: %s", envelope.mail_from, error)
            reply = "451 4.3.0 cannot store the message now; try again later"
        else:
            log.info("inbound %s from <%s> to %s: %s (%s)", outcome.kind, envelope.mail_from, recipients,
                     outcome.outcome, outcome.detail)
            reply = f"250 2.0.0 {outcome.outcome}"
        if self.lmtp:  # LMTP answers once per recipient (RFC 2033)
            return "\r\n".join([reply] * max(1, len(recipients)))
        return reply


    async def _process(self, message: Incoming) -> Outcome:
        """Queue the message; the first waiter to get the turn processes everything queued by then."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, done))
        async with self._processing:
            while not done.done():  # whoever holds the turn works through the queue up to its own message
                batch, self._waiting = self._waiting[:BATCH_MAX], self._waiting[BATCH_MAX:]
                await self._run(batch)
        return await done

    async def _run(self, batch: list[tuple[Incoming, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await asyncio.to_thread(self.processor.handle_batch, [m for m, _ in batch])
        except (SQLAlchemyError, NewsletterError, OSError) as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for one in batch:  # none of them took effect: alone, only a message that breaks a commit fails
                await self._run([one])
            return
        except Exception as error:  # noqa: BLE001 - handed to each message's own handler, which raises it
            for _, done in batch:
                done.set_exception(error)
            return
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            done.set_result(outcome)


class _Counted:
    """Mixin for aiosmtpd's SMTP/LMTP protocol: refuses a connection past the limits, before any session."""

    counts: collections.Counter[str]
    refused = False
    ip = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if sum(self.counts.values()) >= MAX_CONNECTIONS or self.counts[self.ip] >= MAX_CONNECTIONS_PER_IP:
            self.refused = True
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(b"421 4.7.0 too many connections; try again later\r\n")
            transport.close()
            return
        self.counts[self.ip] += 1
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        self.counts[self.ip] -= 1
        if self.counts[self.ip] <= 0:
            del self.counts[self.ip]
        super().connection_lost(error)  # type: ignore[misc]

    def eof_received(self) -> bool | None:
        if self.refused:
            return False
        result: bool | None = super().eof_received()  # type: ignore[misc]
        return result


class InboundServer:
    """The listening socket, started and stopped inside a running event loop."""

    def __init__(self, processor: InboundProcessor, settings: InboundSettings) -> None:
        self.settings = settings
        self.handler = InboundHandler(processor, settings)
        self.server: asyncio.base_events.Server | None = None
        base = LMTP if settings.protocol == "lmtp" else SMTP
        self.kind: type[SMTP] = type(f"Counted{base.__name__}", (_Counted, base),
                                     {"counts": collections.Counter()})

    def _protocol(self) -> SMTP:
        options: dict[str, Any] = {"data_size_limit": self.settings.max_message_bytes, "enable_SMTPUTF8": True,
                                   "decode_data": False, "hostname": self.settings.domain or "localhost"}
        return self.kind(self.handler, **options)

    async def start(self, *, port: int | None = None) -> int:
        """Listen on [inbound] host and port (or ``port``; 0 picks a free one); returns the port."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, self.settings.host,
                                               self.settings.port if port is None else port)
        sockets = self.server.sockets
        bound = int(sockets[0].getsockname()[1]) if sockets else 0
        log.info("inbound %s listener on %s:%d for @%s", self.settings.protocol, self.settings.host, bound,
                 self.settings.domain)
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def serve_inbound(processor: InboundProcessor, settings: InboundSettings,
                        stop: asyncio.Event | None = None) -> None:
    """Listen until ``stop`` is set (forever when None)."""
    server = InboundServer(processor, settings)
    await server.start()
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await server.stop()
