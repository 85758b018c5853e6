"""Transports: what carries one claimed message to the relay (a reused SMTP connection) or to a folder.

The SMTP transport opens its connection with aiosmtplib (TLS, STARTTLS, EHLO, AUTH) and then hands it to
:class:`SmtpSession`, which pipelines MAIL, RCPT and DATA. Errors are raised as aiosmtplib's exceptions
for the pool to classify; a transport never records anything in the ledger itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib
from aiosmtplib.errors import (
    SMTPConnectError,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from newsletter.config import DeliverySettings
from newsletter.delivery.smtp_session import SmtpSession
from newsletter.errors import DeliveryError
from newsletter.storage.ledger import Delivery


@dataclass(frozen=True)
class ClaimedMessage:
    """A ledger row this process has claimed, with the message bytes built for it."""

    delivery: Delivery
    message: bytes


MarkData = Callable[[], Awaitable[None]]
"""Returns once the ledger has committed that the row reached the DATA phase (raises if it must not be sent)."""


class Transport(Protocol):
    """Sends one message; the pool gives each worker its own transport (one SMTP connection)."""

    async def send(self, claimed: ClaimedMessage, mark_data: MarkData) -> tuple[str, int | None, str]:
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

    async def send(self, claimed: ClaimedMessage, mark_data: MarkData) -> tuple[str, int | None, str]:
        self.phase = "connect"
        if self.session is None or self.session.closed:
            smtp = await connect(self.settings, password=self.password)
            try:
                self.session = SmtpSession(smtp, sender=self.sender, timeout=self.settings.timeout_seconds)
            except BaseException:
                smtp.close()
                raise
        session = self.session
        message = claimed.message if self.wire_ready else wire_form(claimed.message)
        try:
            own = self.envelope_sender(claimed.delivery) if self.envelope_sender is not None else None
            response = await session.send(claimed.delivery.email, message, mark_data, sender=own)
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

    async def send(self, claimed: ClaimedMessage, mark_data: MarkData) -> tuple[str, int | None, str]:
        await mark_data()
        self.phase = "data"
        d = claimed.delivery
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"edition-{d.edition_id}-subscriber-{d.subscriber_id}.eml"
        temporary = target.with_suffix(f".tmp{os.getpid()}")
        temporary.write_bytes(claimed.message)
        temporary.replace(target)
        return "data", 250, f"written to {target}"

    async def reset(self) -> None:
        return None

    async def drop(self) -> None:
        return None

    async def close(self) -> None:
        return None


TransportFactory = Callable[[], "SmtpTransport | FileTransport"]
