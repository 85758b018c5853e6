"""A webhook receiver on 127.0.0.1 that verifies every request with the `standardwebhooks` package and can be
taken down (connection refused) and brought back on the same port."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support import free_port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Received:
    webhook_id: str
    type: str
    subject: str
    data: dict[str, Any]


class Receiver:
    """Records each verified event; counts the requests whose signature did not verify."""

    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.port = free_port()
        self.events: list[Received] = []
        self.unverified = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    payload = receiver.verifier.verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.unverified += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                data = payload["data"]
                kind = "edition" if payload["type"].startswith("edition.") else "subscriber"
                with receiver.lock:
                    receiver.events.append(Received(self.headers["webhook-id"], payload["type"],
                                                    f"{kind}:{data['id']}", data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = list(self.events)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def of(self, subject: str) -> list[str]:
        with self.lock:
            return [e.type for e in self.events if e.subject == subject]

    def dump(self) -> str:
        return json.dumps([(e.type, e.subject) for e in self.events])
