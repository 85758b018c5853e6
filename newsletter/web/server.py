"""Serving the web app: uvicorn on ``[web] host:port`` (or ``serve``'s loop), with the confirmation sender.

Apart from ``app`` (the routes and pages) because this is the process side: signals, shutdown, the
background task that must stop with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.web.app import create_app
from newsletter.web.guards import ConnectionLimits, protocol_class, quiet_accept_errors


async def run_server(
    settings: Settings,
    engine: Engine,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = False,
    handle_signals: bool = True,
) -> None:
    """Serve ``create_app`` with uvicorn on the running event loop until stopped (or cancelled).

    The access log is off by default: page URLs hold link tokens, which do not belong in logs. uvicorn's
    own proxy-header support is off: X-Forwarded-For/-Proto count only from ``[web] trusted_proxies``
    (``newsletter.web.proxies``). The background sender of confirmation emails runs on the same loop for
    as long as the server does (under another ASGI server, the app's lifespan runs it).
    ``handle_signals=False`` leaves SIGINT/SIGTERM to the caller (``serve``).
    """
    app = create_app(settings, engine)
    limits = ConnectionLimits.for_server(total=settings.web.max_connections, per_ip=settings.web.max_connections_per_ip,
                                         head_seconds=settings.web.body_timeout_seconds,
                                         exempt=settings.web.trusted_proxies)
    config = uvicorn.Config(app, host=host or settings.web.host, port=port or settings.web.port,
                            access_log=access_log, server_header=False, proxy_headers=False, log_level="info",
                            lifespan="off", log_config=None,  # uvicorn's lines go through our handler (JSON too)
                            http=protocol_class(limits))  # connection limits: newsletter.web.guards
    quiet_accept_errors(asyncio.get_running_loop())
    # The sender is run here, not by the lifespan: a cancelled serve() (``serve`` stopping) skips uvicorn's
    # lifespan shutdown, and the sender must stop with the server, giving back the rows it had taken.
    # (and so is the webhooks' delivery loop: every job of ``app.state.background``)
    tasks = [asyncio.create_task(job()) for job in app.state.background]

    async def stop_sender() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    server = _Server(config, on_shutdown=stop_sender) if handle_signals else _EmbeddedServer(config,
                                                                                             on_shutdown=stop_sender)
    try:
        await server.serve()
    finally:
        await stop_sender()


class _Server(uvicorn.Server):
    """uvicorn that stops the outbox sender during its own shutdown: after a SIGTERM, uvicorn re-raises the
    signal as ``serve()`` returns, so code after ``serve()`` would never run."""

    def __init__(self, config: uvicorn.Config, *, on_shutdown: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        await self.on_shutdown()


class _EmbeddedServer(_Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the host program (``serve``) owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
