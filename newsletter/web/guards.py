"""Bounds on what one client can hold of the web server: connections, file handles, time, log lines.

Why (issue 25): uvicorn runs with no body timeout and no connection limit. 1,100 connections from one
client that each sent a POST's headers and then stalled took ``/healthz`` and ``/archive`` down for
everyone: the process ran out of file handles (a soft limit of 1,024 is common), every ``accept()``
failed, and asyncio logged 150,970 tracebacks (65 MB) in ten seconds. So:

* ``raise_file_limit``: the soft limit of open files is raised to the hard one when the server starts;
* ``GuardedH11Protocol``: a connection past ``[web] max_connections`` in all, or past
  ``max_connections_per_ip`` from one client address (a trusted proxy's address is not counted), is
  closed as soon as it is accepted; one that has not sent a complete request head within
  ``body_timeout_seconds`` is closed too;
* ``BodyDeadline`` (ASGI middleware): a request body that is not complete ``body_timeout_seconds`` after the
  request started is answered 408 and the connection closed; a client that hangs up mid-body ends the
  request quietly (Starlette's ``ClientDisconnect`` was logged as an unexpected error with a traceback);
* ``quiet_accept_errors``: asyncio's "socket.accept() out of system resource" is logged at most once
  every ``ACCEPT_LOG_SECONDS``, with the count of the ones left out.

The server uses h11 for HTTP/1.1 (uvicorn's pure-Python protocol), whatever else is installed.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

ACCEPT_LOG_SECONDS = 10.0
RESERVED_FILES = 64
"""File handles kept free of connections: the database, templates, SMTP, logs."""


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard one (where allowed); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


@dataclass
class ConnectionLimits:
    """What the protocol class below counts, shared by every connection of one server."""

    total: int
    per_ip: int
    head_seconds: float
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    by_ip: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: int = 0

    @classmethod
    def for_server(cls, *, total: int, per_ip: int, head_seconds: float, exempt: Iterable[str]) -> ConnectionLimits:
        """``total`` lowered to fit the open-file limit (after raising it), so ``accept()`` never runs out."""
        fits = max(16, raise_file_limit() - RESERVED_FILES)
        if fits < total:
            log.warning("web: at most %d connections (the open-file limit), not max_connections = %d", fits, total)
        return cls(total=min(total, fits), per_ip=per_ip, head_seconds=head_seconds,
                   exempt=tuple(ipaddress.ip_network(e, strict=False) for e in exempt))

    def counted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return True
        return not any(address in network for network in self.exempt)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the connection limits of the module docstring."""

    limits: ConnectionLimits

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._ip: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        limits = self.limits
        counted = limits.counted(ip)
        if len(self.connections) >= limits.total or (counted and limits.by_ip[ip] >= limits.per_ip):
            limits.refused += 1
            transport.abort()  # the file handle is given back now, not after a timeout
            return
        if counted:
            self._ip = ip
            limits.by_ip[ip] += 1
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(limits.head_seconds, self._head_overdue)

    def _head_overdue(self) -> None:
        if self.cycle is None and not self.transport.is_closing():  # no complete request head yet
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._ip is not None:
            self.limits.by_ip[self._ip] -= 1
            if self.limits.by_ip[self._ip] <= 0:
                del self.limits.by_ip[self._ip]
            self._ip = None
        elif self.transport is None:  # refused in connection_made: uvicorn never saw it
            return
        super().connection_lost(exc)


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class bound to one server's limits (uvicorn instantiates it per connection)."""
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class _Stalled(Exception):
    """The request body did not arrive in time."""


class BodyDeadline:
    """ASGI middleware: the whole request body within ``seconds`` of the request's start, else 408."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _Stalled from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except _Stalled:
            if not started:
                await send({"type": "http.response.start", "status": 408,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": b"Request body not received in time.\n"})
        except ClientDisconnect:
            return  # the client left mid-body: nothing to answer, nothing to log


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, *,
                        clock: Callable[[], float] = time.monotonic) -> None:
    """Log asyncio's accept() resource errors at most once every ACCEPT_LOG_SECONDS (others as before)."""
    previous = loop.get_exception_handler()
    last = [-ACCEPT_LOG_SECONDS]
    skipped = [0]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            now = clock()
            if now - last[0] < ACCEPT_LOG_SECONDS:
                skipped[0] += 1
                return
            last[0] = now
            error = context.get("exception")
            log.error("web: cannot accept connections: %s (%d more such errors not logged)", error, skipped[0])
            skipped[0] = 0
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
