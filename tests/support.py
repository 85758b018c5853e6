"""Helpers many test modules share: the CLI as a user runs it, a free port, the signing secret, a DKIM key."""

from __future__ import annotations

import base64
import contextlib
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from subscribers.store import SubscriberStore


def run(config: Path | None, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """`newsletter [--config CONFIG] ARGS…` in-process (click's runner): exit code and everything printed."""
    front = ["--config", str(config)] if config is not None else []
    result = CliRunner().invoke(cli, [*front, *args], input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def secret_fixture(value: str) -> Callable[[pytest.MonkeyPatch], None]:
    """An autouse fixture putting ``value`` into NEWSLETTER_SECRET: ``secret = secret_fixture(SECRET)``."""

    @pytest.fixture(autouse=True)
    def secret(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NEWSLETTER_SECRET", value)

    return secret


def dkim_key_pair(folder: Path) -> tuple[Path, bytes]:
    """A new 2048-bit RSA key in ``folder``/dkim.pem (openssl), and its DNS TXT record."""
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 answering with ``handler``; yields its base URL, stops after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def subscriber_snapshot(store: SubscriberStore) -> dict[str, tuple[object, ...]]:
    """Every stored fact of every subscriber (consent, suppression entry, evidence), by address: what an
    export followed by an import must give back unchanged."""
    from subscribers.evidence import EvidenceStore

    evidence = EvidenceStore(store.engine)
    result: dict[str, tuple[object, ...]] = {}
    for s in store.list_all():
        entry = store.suppression(s.email)
        events = tuple((e.kind, e.action, e.status, e.diagnostic, e.message_id, e.created)
                       for e in evidence.events(s.id))
        result[s.email] = (s.status, s.name, s.topics, s.frequency, s.source, s.consent_at, s.consent_ip,
                           s.confirmed_at, s.confirmed_ip, s.unsubscribed_at, s.created,
                           (entry.reason, entry.created) if entry else None, events)
    return result
