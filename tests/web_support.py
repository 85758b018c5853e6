"""Shared set-up for the web tests: a config with the fixture topics, a real SMTP sink, helpers to read links."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from newsletter.config import Settings, load_settings
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
