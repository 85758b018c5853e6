"""An embedded SMTP server on 127.0.0.1 that records what it receives and misbehaves on request.

Two users need a real SMTP peer rather than a mock: ``newsletter demo`` (the demo's emails land in a Maildir a
mail client can open) and the test-suite (delivery code must be proven against real replies, dropped
connections and slow servers, as in aiosmtplib's ``tests/smtpd.py``). Faults are scripted per SMTP phase with
:class:`Fault`; everything else is a plain, fast aiosmtpd server.

The server runs on its own event loop in a background thread, so synchronous code and async tests (whose loop
must stay free to run the client) can both drive it.
"""

from __future__ import annotations

import asyncio
import hmac
import mailbox
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

__all__ = ["DATA_SIZE_LIMIT", "Fault", "MailSink", "ReceivedMessage"]

PHASES = ("connect", "mail", "rcpt", "data", "dot")
ACTIONS = ("reply", "drop", "delay")
DATA_SIZE_LIMIT = 32 * 1024 * 1024
"""Generous on purpose: the sink checks delivery logic, not a provider's size policy."""
_MAX_LINE = 1001
"""RFC 5321 4.5.3.1.6: 998 octets + CRLF, plus a transparency dot; aiosmtpd's own limit, kept for DATA lines."""
_HOSTNAME = "mailsink.localhost"
"""Fixed greeting name: without it aiosmtpd calls ``socket.getfqdn()`` (a DNS lookup) for every connection."""


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the sink accepted: the envelope and the content bytes exactly as transmitted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    """Raw content after DATA (dot-unstuffed, CRLF line ends kept); never parsed, so the sink stays cheap."""
    received_at: float
    """``time.monotonic()`` when the message was stored, for throughput and ordering checks."""


@dataclass
class Fault:
    """One scripted misbehaviour.

    ``phase``: ``connect`` (instead of / before the greeting), ``mail``, ``rcpt``, ``data`` (the reply to the DATA
    command, before any content) or ``dot`` (the reply after the final ``.``, i.e. after the content arrived).

    ``action``: ``reply`` sends ``reply`` (e.g. ``451 4.7.1 Try again later``) instead of the normal answer;
    ``drop`` closes the connection without replying; ``delay`` sleeps ``seconds`` and then answers normally.
    A ``421`` reply (in any phase) and any reply in the ``connect`` phase also close the connection afterwards,
    as real servers do.

    ``recipient`` limits the fault to transactions involving that address (``rcpt``: the address being added;
    ``data``/``dot``: any accepted recipient); None matches anything. ``times`` is how often it fires
    (None = forever).

    ``dot`` + ``drop`` stores the message and then closes the connection without a reply: the server has it, the
    sender cannot know. That is the ambiguous case a sender's ledger must handle.
    """

    phase: str
    action: str
    reply: str = ""
    seconds: float = 0.0
    recipient: str | None = None
    times: int | None = 1

    def __post_init__(self) -> None:
        """Reject faults that could never fire, so a typo fails the test that wrote it, not silently passes."""
        if self.phase not in PHASES:
            raise ValueError(f"Fault phase {self.phase!r} is not one of {', '.join(PHASES)}")
        if self.action not in ACTIONS:
            raise ValueError(f"Fault action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.action == "reply" and not (self.reply[:3].isdigit() and self.reply[:1] in "2345"):
            raise ValueError(f"Fault reply {self.reply!r} must start with an SMTP code, e.g. '451 4.7.1 Try again'")
        if self.recipient is not None and self.phase in ("connect", "mail"):
            raise ValueError(f"Fault phase {self.phase!r} happens before any recipient is known; drop `recipient`")
        if self.times is not None and self.times < 1:
            raise ValueError(f"Fault times must be None (forever) or >= 1, got {self.times}")


@dataclass
class _Armed:
    """A fault plus its remaining count, kept apart so the caller's :class:`Fault` is never mutated."""

    fault: Fault
    remaining: int | None


def _abort(server: SMTP) -> None:
    """Cut the connection with nothing more written: ``abort`` discards buffered bytes, ``close`` would flush."""
    transport = server.transport
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


async def _misbehave(server: SMTP, fault: Fault | None) -> str | None:
    """Apply a fault; return the reply to send instead of the normal one, or None to carry on normally.

    After a ``drop`` the reply is "" and is never sent: the transport is gone, so aiosmtpd's write is discarded.
    A ``421`` reply closes the connection once written: aiosmtpd writes a hook's reply synchronously before the
    task next yields, so a ``call_soon(close)`` runs after the write, and ``close()`` flushes what is buffered.
    """
    if fault is None:
        return None
    if fault.action == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.action == "drop":
        _abort(server)
        return ""
    if fault.reply.startswith("421") and server.transport is not None:
        server.loop.call_soon(server.transport.close)
    return fault.reply


class _QuietSession(Session):
    """aiosmtpd sets the deprecated ``login_data`` on every successful AUTH and logs a warning each time.

    Keeping the value but not the warning stops a benchmark that authenticates many connections from flooding
    the log.
    """

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP with the two fault points its handler API lacks (before the greeting, before ``354``)."""

    line_length_limit = DATA_SIZE_LIMIT + 1024
    """The reader's stream limit (documented aiosmtpd knob), raised so DATA is read in big chunks; see _read_data."""

    def __init__(self, sink: MailSink, handler: _Handler, **kwargs: Any) -> None:
        self._sink = sink
        super().__init__(handler, **kwargs)

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sink._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink._connections.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        fault = self._sink._take("connect", ())
        reply = await _misbehave(self, fault)
        if reply is not None:
            if reply:  # there is no greeting after a connect-phase reply, so the session is over either way
                await self.push(reply)
                if self.transport is not None:
                    self.transport.close()
            return
        try:
            await super()._handle_client()
        except ConnectionResetError:
            # The peer (or a 'drop' fault) went away mid-reply; nothing to report, and re-raising would only
            # produce asyncio's "Task exception was never retrieved" noise.
            return

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """DATA with the ``data`` fault point (aiosmtpd sends ``354`` before any hook) and a faster reader."""
        envelope, session = self.envelope, self.session
        if envelope is None or session is None or not session.host_name or not envelope.rcpt_tos or arg:
            await super().smtp_DATA(arg)  # aiosmtpd's own 503/501 replies
            return
        reply = await _misbehave(self, self._sink._take("data", envelope.rcpt_tos))
        if reply is not None:
            if reply:
                await self.push(reply)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        raw = await self._read_data()
        if raw is None:
            status = "552 Error: Too much mail data"
        elif raw and max(map(len, raw.split(b"\r\n"))) + 2 > _MAX_LINE:
            status = "500 Line too long (see RFC5321 4.5.3.1.6)"
        else:
            content = raw.replace(b"\r\n.", b"\r\n")  # undo dot-stuffing (RFC 5321 4.5.2)
            envelope.content = envelope.original_content = content[1:] if content[:1] == b"." else content
            status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()  # what aiosmtpd's (untyped) _set_post_data_state does
        await self.push(status)

    async def _read_data(self) -> bytes | None:
        """Read up to the lone ``.`` line in a few large reads; None if it exceeds ``data_size_limit``.

        aiosmtpd's own DATA loop awaits once per line, which was ~70% of the sink's CPU for newsletter-sized
        messages and capped it near 400 msg/s for 40 KB mails. Reading until "." CRLF stops only at lines that
        end in a dot; the terminator is the stop where that dot starts a line. Returns the content still
        dot-stuffed, without the final "." CRLF.
        """
        limit = self.data_size_limit or 0
        chunks: list[bytes] = []
        size, tail, too_big = 0, b"\r\n", False
        while True:
            try:
                chunk = await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as exc:  # only past the stream limit, i.e. far too big
                chunk, too_big = await self._reader.readexactly(exc.consumed), True
            except asyncio.IncompleteReadError as exc:
                raise ConnectionResetError("connection closed during DATA") from exc
            size += len(chunk)
            too_big = too_big or bool(limit and size > limit)
            if too_big:
                chunks.clear()
            else:
                chunks.append(chunk)
            head = chunk[:-3]
            if chunk.endswith(b".\r\n") and (head if len(head) >= 2 else tail + head).endswith(b"\r\n"):
                break
            tail = chunk[-2:]
        return None if too_big else b"".join(chunks)[:-3]


class _Handler:
    """aiosmtpd hooks for MAIL, RCPT and the end of DATA; the normal path must stay cheap (no parsing)."""

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # with this hook, aiosmtpd leaves it to the handler
        if self._sink.pipelining:
            # aiosmtpd reads commands from a buffered stream and answers them in order, which is all
            # RFC 2920 asks of a server; it just does not say so.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # Checked here rather than with aiosmtpd's auth_required=True, which warns on every connection when
        # combined with auth_require_tls=False.
        if self._sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        reply = await _misbehave(server, self._sink._take("mail", ()))
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = await _misbehave(server, self._sink._take("rcpt", (address,)))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sink = self._sink
        fault = sink._take("dot", envelope.rcpt_tos)
        mail_from = envelope.mail_from or ""
        data = envelope.original_content or b""
        if fault is not None and fault.action == "drop":
            sink._record(mail_from, envelope.rcpt_tos, data)  # stored, then no reply: the ambiguous case
            return await _misbehave(server, fault) or ""
        if sink.reply_delay > 0:
            # A client that gives up during a delay cancels this task, so the message is not stored.
            sink.delayed_replies += 1
            await asyncio.sleep(sink.reply_delay)
        reply = await _misbehave(server, fault)
        if reply is not None:
            return reply
        try:
            sink._record(mail_from, envelope.rcpt_tos, data)
        except OSError as exc:
            return f"451 4.3.0 Maildir write failed: {exc.strerror or exc}"
        return "250 2.0.0 OK"


class MailSink:
    """A local SMTP server that stores accepted messages in memory (and optionally a Maildir).

    Use as ``with MailSink() as sink:`` or ``async with MailSink() as sink:``; ``sink.port`` is known after
    start. ``auth=(user, password)`` requires AUTH LOGIN/PLAIN over plain TCP; without it AUTH is optional and
    any credentials are accepted (like dev mail catchers), so a configured sender works unchanged.

    ``pipelining``: offer PIPELINING (RFC 2920), as real relays do; off, clients send one command at a time.
    ``tls``: a server certificate context; with ``tls_mode="starttls"`` the sink requires STARTTLS, with
    ``"tls"`` every connection is TLS from the first byte (port 465 style).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        maildir: Path | None = None,
        reply_delay: float = 0.0,
        auth: tuple[str, str] | None = None,
        pipelining: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_mode: Literal["starttls", "tls"] = "starttls",
    ) -> None:
        self.host = host
        self.pipelining = pipelining
        self.tls = tls
        self.tls_mode = tls_mode
        self.port = port
        self.maildir = maildir
        self.reply_delay = reply_delay
        """Seconds every reply after DATA's final '.' waits (remote-relay latency); may be changed while running."""
        self.delayed_replies = 0
        """Replies that waited ``reply_delay`` (so a test asserts the delay itself, not a clock)."""
        self.auth = auth
        self.messages: list[ReceivedMessage] = []
        self.paths: list[Path] = []
        self.authenticated_users: list[str] = []
        self._lock = threading.Lock()
        self._faults: list[_Armed] = []
        self._connections: set[_SinkSMTP] = set()
        """Open connections (touched only on the loop thread), so ``stop()`` can cut them off."""
        self._mailbox: mailbox.Maildir | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve in a background thread; returns once the port accepts connections.

        A bind failure (e.g. the port is taken) is raised here as the original ``OSError``.
        """
        if self._thread is not None:
            raise RuntimeError("MailSink is already running")
        if self.maildir is not None:
            self._mailbox = mailbox.Maildir(self.maildir, create=True)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[OSError] = []
        thread = threading.Thread(target=self._run, args=(loop, ready, errors), name="mailsink", daemon=True)
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise errors[0]
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event, errors: list[OSError]) -> None:
        asyncio.set_event_loop(loop)
        handler = _Handler(self)
        options: dict[str, Any] = {
            "hostname": _HOSTNAME,
            "ident": "newsletter mailsink",
            "data_size_limit": DATA_SIZE_LIMIT,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "auth_require_tls": False,
            "authenticator": self._authenticate,
            "loop": loop,
        }
        if self.tls is not None and self.tls_mode == "starttls":
            options |= {"tls_context": self.tls, "require_starttls": True}
        implicit_tls = self.tls if self.tls_mode == "tls" else None
        try:
            server = loop.run_until_complete(
                loop.create_server(lambda: _SinkSMTP(self, handler, **options), self.host, self.port, backlog=256,
                                   ssl=implicit_tls)
            )
        except OSError as exc:
            errors.append(exc)
            loop.close()
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(self._connections):
                _abort(connection)
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- faults ----------------------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Arm a fault; faults are tried in the order added and the first match fires."""
        with self._lock:
            self._faults.append(_Armed(fault, fault.times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take(self, phase: str, recipients: tuple[str, ...] | list[str]) -> Fault | None:
        """Return the first armed fault for this phase and recipients, counting it as fired."""
        if not self._faults:  # the hot path: no lock when nothing is scripted
            return None
        with self._lock:
            for armed in self._faults:
                fault = armed.fault
                if fault.phase != phase:
                    continue
                if fault.recipient is not None and fault.recipient.lower() not in (r.lower() for r in recipients):
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._faults.remove(armed)
                return fault
        return None

    # -- recording -------------------------------------------------------------------------------------------

    def _record(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        path: Path | None = None
        if self._mailbox is not None and self.maildir is not None:
            # Maildir files use LF line ends; mail clients and `mailbox` expect that, not SMTP's CRLF.
            key = self._mailbox.add(data.replace(b"\r\n", b"\n"))
            path = self.maildir / "new" / key
        message = ReceivedMessage(mail_from, tuple(rcpt_tos), data, time.monotonic())
        with self._lock:
            self.messages.append(message)
            if path is not None:
                self.paths.append(path)

    def by_recipient(self) -> dict[str, list[ReceivedMessage]]:
        """Messages per envelope recipient; a message sent to two recipients appears under both."""
        with self._lock:
            messages = list(self.messages)
        grouped: dict[str, list[ReceivedMessage]] = {}
        for message in messages:
            for rcpt in message.rcpt_tos:
                grouped.setdefault(rcpt, []).append(message)
        return grouped

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd ``authenticator``: check LOGIN/PLAIN credentials against ``auth`` (or accept any if unset)."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        if self.auth is not None:
            want_user, want_password = self.auth
            user_ok = hmac.compare_digest(auth_data.login, want_user.encode())
            password_ok = hmac.compare_digest(auth_data.password, want_password.encode())
            if not (user_ok and password_ok):
                return AuthResult(success=False, handled=False)
        with self._lock:
            self.authenticated_users.append(user)
        return AuthResult(success=True, auth_data=auth_data)
