"""A local HTTP server on 127.0.0.1 that stands in for chat services (JSON webhooks, Mattermost, ntfy, Matrix).

It records every request (method, path, headers, body) and answers each with the next scripted reply
(status, headers, an optional hold before answering), or 200 ``{}`` when none is scripted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    hold: threading.Event | None = None
    """When set, the answer waits until this event is set (a post caught in flight)."""


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.replies: list[Reply] = []
        self.arrived = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
                server.arrived.set()
                reply = server.replies.pop(0) if server.replies else Reply()
                if reply.hold is not None:
                    reply.hold.wait(30)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PUT")]


def chat_server() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server
