"""The demo's SMTP server: aiosmtpd on 127.0.0.1 storing every accepted message in a Maildir.

Small on purpose: it accepts what it is given, as a local mail catcher does. The fault-injecting server the
tests drive lives in ``tests/mailsink.py``.
"""

from __future__ import annotations

import mailbox
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.mailbox = mailbox.Maildir(maildir, create=True)
        self.paths: list[Path] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # Maildir files use LF line ends; mail clients and `mailbox` expect that, not SMTP's CRLF.
        key = self.mailbox.add(content.replace(b"\r\n", b"\n"))
        with self._lock:
            self.paths.append(self.maildir / "new" / key)
        return "250 OK stored"


def _accept_any_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


def _free_port(host: str) -> int:
    """A port the system just handed out (aiosmtpd's Controller needs the number before it binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class MaildirServer:
    """``with MaildirServer(maildir) as server:`` serves on ``server.port`` until the block ends."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1") -> None:
        self.maildir = maildir
        self._handler = _MaildirHandler(maildir)
        self.port = _free_port(host)
        self._controller = Controller(
            self._handler, hostname=host, port=self.port, ready_timeout=10,
            server_hostname="demo.localhost", decode_data=False, enable_SMTPUTF8=True,
            auth_require_tls=False, authenticator=_accept_any_login,
        )

    @property
    def paths(self) -> list[Path]:
        """The Maildir files of the messages received so far, in arrival order."""
        return list(self._handler.paths)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        if self._controller.server is not None:
            self._controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
