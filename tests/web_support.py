"""Shared set-up for the web tests: a config with the fixture topics, a real SMTP sink, helpers to read links."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.storage.db import open_database
from newsletter.web.app import create_app
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.conftest import write_config
from tests.email_support import FIXTURE_SOURCES, POSTAL
from tests.mailsink import MailSink, ReceivedMessage

SECRET = "k1:web-test-secret-0123456789"


def web_settings(folder: Path, sink: MailSink, *, base_url: str = "https://papers.example.org",
                 per_ip: int = 10) -> Settings:
    extra = (f'[email]\npostal_address = "{POSTAL}"\n'
             f"[delivery]\nport = {sink.port}\ntimeout_seconds = 5\n"
             f"[web]\nsubscribe_limit_per_ip = {per_ip}\n")
    path = write_config(folder, FIXTURE_SOURCES, extra=extra)
    if base_url != "https://papers.example.org":
        path.write_text(path.read_text(encoding="utf-8").replace("https://papers.example.org", base_url),
                        encoding="utf-8")
    return load_settings(path)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def body_of(message: ReceivedMessage) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    return str(parsed.get_content())  # type: ignore[attr-defined]


def confirm_link(message: ReceivedMessage) -> str:
    match = re.search(r"https?://\S+/confirm/\S+", body_of(message))
    assert match, "no confirmation link in the email"
    return match.group(0)


TOPICS = ["agents", "reasoning", "medical"]


CLIENT = ("203.0.113.5", 50000)


@dataclass
class Site:
    client: TestClient
    sink: MailSink
    settings: Settings
    engine: Engine
    store: SubscriberStore
    signer: TokenSigner

    def form_token(self) -> str:
        return csrf_token(self.client.get("/").text)

    def subscribe(self, email: str, *, topics: tuple[str, ...] = ("agents",), token: str | None = None,
                  **extra: str) -> int:
        data = {"csrf_token": token or self.form_token(), "email": email, "topics": list(topics),
                "frequency": "daily", "website": "", **extra}
        status = self.client.post("/subscribe", data=data).status_code
        self.drain()
        return status

    def drain(self) -> int:
        """Run the app's background sender once over the outbox (TestClient runs no background loop)."""
        return asyncio.run(self.client.app.state.web.sender.deliver_due())  # type: ignore[attr-defined]

    def path(self, purpose: str, subscriber_id: int) -> str:
        return f"/{purpose}/{self.signer.sign(purpose, subscriber_id)}"  # type: ignore[arg-type]


def make_site(tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch, *, per_ip: int = 10) -> Site:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    settings = web_settings(tmp_path, sink, per_ip=per_ip)
    engine = open_database(settings.newsletter.database_url)
    client = TestClient(create_app(settings, engine), follow_redirects=False, client=CLIENT)
    return Site(client, sink, settings, engine, SubscriberStore(engine, topics=TOPICS),
                TokenSigner(Keyring.parse(SECRET)))
