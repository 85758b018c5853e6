"""The one background sender of confirmation emails: reads the outbox, sends with bounded concurrency.

Why: a sign-up used to send its confirmation inside the web process, one SMTP connection each; with a slow
relay that meant hundreds of open connections and a site that stopped accepting requests. Now the form only
writes an outbox row (``newsletter.storage.outbox``) and this sender, one per web process, runs at most
``[web] confirmation_concurrency`` workers, each with one reused SMTP connection: never more connections
than that, however many sign-ups arrive. Replies are classed as the delivery path classes them: 2xx sent,
421/4xx and lost connections retried with the ``[delivery]`` back-off (``retry_base_seconds``,
``max_attempts``), a bad address or a message that cannot be sent failed (``delivery.replies.classify``). No
message stops the sender: an unexpected error is logged with its row, which is retried later. A row taken
and not sent when the process stops is given back; one taken by a process that died is taken again once its
lease (``[delivery] lease_seconds``) ends.

The link in the email names the outbox row (token purpose ``request``), so confirming applies exactly the
request the email was sent for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import aiosmtplib
from aiosmtplib import (
    SMTPConnectError,
    SMTPDataError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import Settings
from newsletter.delivery.replies import classify
from newsletter.delivery.sending import smtp_password
from newsletter.delivery.transports import connect
from newsletter.rendering.templating import RenderEnvironment
from newsletter.storage.outbox import ConfirmationOutbox, OutboxItem
from newsletter.usecases.subscribe import confirmation_message
from subscribers.tokens import TokenSigner

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 5.0
"""How often an idle sender looks for rows another process queued (its own sign-ups wake it at once)."""
OUTAGE_LOG_SECONDS = 60.0
"""While the outbox cannot be read, the error is logged once, then at most once per this many seconds."""


def request_url(settings: Settings, signer: TokenSigner, item_id: int) -> str:
    return f"{settings.newsletter.base_url.rstrip('/')}/confirm/{signer.sign('request', item_id)}"


def ascii_address(email: str) -> str:
    """The address as an ASCII relay needs it (IDNA domain); sign-up refuses non-ASCII local parts."""
    try:
        return validate_email(email, check_deliverability=False).ascii_email or email
    except EmailNotValidError:
        return email


class ConfirmationSender:
    def __init__(self, settings: Settings, engine: Engine, signer: TokenSigner, *, environment: RenderEnvironment,
                 clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.outbox = ConfirmationOutbox(engine)
        self.signer = signer
        self.environment = environment
        self.clock = clock
        self.concurrency = settings.web.confirmation_concurrency
        self.lease = timedelta(seconds=settings.delivery.lease_seconds)
        self.password = smtp_password(settings)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outage_logged: float | None = None
        """When (loop time) the outbox error was last logged; None while the outbox can be read."""

    def wake(self) -> None:
        """New rows were queued: start sending now instead of at the next poll (safe from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._signal)

    def _signal(self) -> None:
        """Wake every idle worker: each took the current event *before* looking for rows, so none misses it."""
        event, self._wake = self._wake, asyncio.Event()
        if event is not None:
            event.set()

    async def run(self) -> None:
        """``concurrency`` long-lived workers sending due rows until cancelled (the web server's lifetime)."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        try:
            await asyncio.gather(*(self._worker(forever=True) for _ in range(self.concurrency)))
        finally:
            self._loop = self._wake = None

    async def deliver_due(self) -> int:
        """Send every row due now with ``concurrency`` workers, then return how many were sent."""
        results = await asyncio.gather(*(self._worker(forever=False) for _ in range(self.concurrency)))
        return sum(results)

    async def _idle(self, event: asyncio.Event) -> None:
        try:
            due = await asyncio.to_thread(self.outbox.next_due)
        except SQLAlchemyError as error:  # the database went away between two looks: wait, do not die
            self._outbox_down(error)
            due = None
        wait = IDLE_POLL_SECONDS
        if due is not None:
            wait = min(wait, max(0.05, (due - self.clock()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=wait)

    async def _worker(self, *, forever: bool) -> int:
        smtp: aiosmtplib.SMTP | None = None
        sent = 0
        try:
            while True:
                event = self._wake
                try:
                    claimed = await self._claim()
                except SQLAlchemyError as error:  # the database is busy or gone: this worker must not die
                    self._outbox_down(error)
                    await asyncio.sleep(1.0)
                    continue
                if self._outage_logged is not None:
                    self._outage_logged = None
                    log.warning("confirmation sender: the outbox can be read again")
                if not claimed:
                    if not forever or event is None:
                        return sent
                    if smtp is not None:  # idle: give the relay its connection back
                        smtp.close()
                        smtp = None
                    await self._idle(event)
                    continue
                item = claimed[0]
                try:
                    smtp, ok = await self._send(smtp, item)
                except asyncio.CancelledError:
                    self.outbox.release([item.id], now=self.clock())  # not sent: due again after a restart
                    raise
                except Exception as error:  # one message must never stop the sender (a poison row)
                    log.exception("confirmation %s to subscriber %s: unexpected error; retried later",
                                  item.id, item.subscriber_id)
                    if smtp is not None:
                        smtp.close()
                        smtp = None
                    with contextlib.suppress(SQLAlchemyError):
                        await asyncio.to_thread(self._retry, item, None, f"{type(error).__name__}: {error}")
                    continue
                sent += ok
        finally:
            if smtp is not None:
                smtp.close()

    def _outbox_down(self, error: SQLAlchemyError) -> None:
        """Log an outbox outage once, then at most every ``OUTAGE_LOG_SECONDS`` (every worker retries each second)."""
        now = asyncio.get_running_loop().time()
        if self._outage_logged is None or now - self._outage_logged >= OUTAGE_LOG_SECONDS:
            again = "" if self._outage_logged is None else " (still)"
            self._outage_logged = now
            reason = str(getattr(error, "orig", error)).splitlines()[0] if str(error) else type(error).__name__
            log.error("confirmation sender: cannot read the outbox%s: %s; retrying every second", again, reason)

    async def _claim(self) -> list[OutboxItem]:
        """Claim one row; a cancel while the claim runs in its thread gives the row back (else it would wait
        for its lease to end after a restart)."""
        future = asyncio.ensure_future(asyncio.to_thread(self.outbox.claim, now=self.clock(), limit=1,
                                                         lease=self.lease))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            taken = await future
            self.outbox.release([item.id for item in taken], now=self.clock())
            raise

    async def _mark_sent(self, item: OutboxItem, reply: str) -> None:
        """Record a sent row even when cancelled meanwhile: a sent row left ``sending`` would be sent twice."""
        future = asyncio.ensure_future(asyncio.to_thread(self.outbox.mark_sent, item.id, now=self.clock(),
                                                         code=250, message=reply))
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            await future
            raise

    async def _send(self, smtp: aiosmtplib.SMTP | None, item: OutboxItem) -> tuple[aiosmtplib.SMTP | None, bool]:
        """Send one row on the worker's connection (opened if needed); returns the connection to reuse."""
        now = self.clock()
        recipient = ascii_address(item.email)
        message = confirmation_message(self.settings, email=recipient, url=request_url(self.settings, self.signer,
                                       item.id), environment=self.environment, now=now)
        delivery = self.settings.delivery
        try:
            if smtp is None or not smtp.is_connected:
                if smtp is not None:
                    smtp.close()
                    smtp = None
                smtp = await connect(delivery, password=self.password)
            _, reply = await smtp.sendmail(self.settings.newsletter.from_address, [recipient], message)
        except SMTPRecipientsRefused as error:  # every recipient refused at RCPT (aiosmtplib's own exception)
            refused = error.recipients[0] if error.recipients else None
            code, text = (refused.code, refused.message) if refused is not None else (451, str(error))
            await self._refused(smtp, item, code, text, phase="rcpt")
            return smtp, False
        except SMTPResponseException as error:
            phase = ("mail" if isinstance(error, SMTPSenderRefused)
                     else "data" if isinstance(error, SMTPDataError) else "connect")
            await self._refused(smtp, item, error.code, error.message, phase=phase)
            return smtp, False
        except (SMTPServerDisconnected, SMTPTimeoutError, SMTPConnectError, OSError) as error:
            if smtp is not None:
                smtp.close()
            await asyncio.to_thread(self._retry, item, None, f"{type(error).__name__}: {error}")
            return smtp, False
        await self._mark_sent(item, str(reply))
        log.info("confirmation %s to subscriber %s sent", item.id, item.subscriber_id)
        return smtp, True

    async def _refused(self, smtp: aiosmtplib.SMTP | None, item: OutboxItem, code: int, message: str, *,
                       phase: str) -> None:
        """A refusal, classed as the delivery path classes it (``delivery.replies``): a bad address or a
        message that cannot be sent fails the row; anything else (4xx, a full mailbox, the relay's policy) is
        retried with back-off until ``max_attempts``."""
        text = f"{code} {message}"
        if classify(code, message, phase=phase).action in ("bounce", "fail"):
            log.warning("confirmation %s to subscriber %s refused: %s", item.id, item.subscriber_id, text)
            await asyncio.to_thread(self.outbox.fail, item.id, now=self.clock(), code=code, message=text)
        else:
            await asyncio.to_thread(self._retry, item, code, text)
        if code == 421 and smtp is not None:
            smtp.close()

    def _retry(self, item: OutboxItem, code: int | None, message: str) -> None:
        delivery = self.settings.delivery
        attempts = item.attempts + 1
        now = self.clock()
        if attempts >= delivery.max_attempts:
            log.warning("confirmation %s to subscriber %s failed after %d attempts: %s", item.id,
                        item.subscriber_id, attempts, message)
            self.outbox.fail(item.id, now=now, code=code, message=f"{message} (gave up after {attempts} attempts)")
            return
        delay = delivery.retry_base_seconds * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
        self.outbox.defer(item.id, now=now, until=now + timedelta(seconds=delay), code=code, message=message)
