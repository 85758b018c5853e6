"""End to end in real headless Chromium (Debian `chromium` driven by Playwright) against a real uvicorn.

A reader opens `/`, subscribes, gets the confirmation email from a real SMTP server (MailSink), opens the link,
confirms, changes topics, then unsubscribes through the page; a mail client then sends an RFC 8058 one-click
POST. Screenshots at 375 px go to test-artifacts/. Skipped with the reason when /usr/bin/chromium
is missing; fails then under CI.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright

from newsletter.config import Settings
from newsletter.storage.db import open_database
from newsletter.web.app import create_app
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.browser_support import ARGS, ARTIFACTS, CHROMIUM
from tests.email_support import NOW
from tests.mailsink import MailSink, ReceivedMessage
from tests.web_support import SECRET, confirm_link, web_settings

WIDTH = 375


@dataclass
class Server:
    base: str
    settings: Settings
    store: SubscriberStore
    sink: MailSink
    signer: TokenSigner


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with MailSink() as sink:
        settings = web_settings(tmp_path, sink, base_url=base)
        engine = open_database(settings.newsletter.database_url)
        uv = uvicorn.Server(uvicorn.Config(create_app(settings, engine), log_level="warning", lifespan="on"))
        thread = threading.Thread(target=lambda: asyncio.run(uv.serve(sockets=[listener])), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not uv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield Server(base, settings, SubscriberStore(engine), sink, TokenSigner(Keyring.parse(SECRET)))
        finally:
            uv.should_exit = True
            thread.join(timeout=10)
            listener.close()


def wait_for_mail(sink: MailSink, count: int) -> ReceivedMessage:
    deadline = time.monotonic() + 10
    while len(sink.messages) < count:
        assert time.monotonic() < deadline, "no confirmation email arrived"
        time.sleep(0.05)
    return sink.messages[count - 1]


def snap(page: Page, name: str) -> None:
    layout = page.evaluate("() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})")
    assert layout["scroll"] <= layout["inner"], f"{name}: horizontal scrolling at {WIDTH}px: {layout}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}-{WIDTH}px.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_subscribe_confirm_change_topics_and_unsubscribe_in_chromium(server: Server) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    store = server.store
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": WIDTH, "height": 800})
        page = context.new_page()
        try:
            page.goto(server.base + "/")
            honeypot = page.locator("#website").bounding_box()
            assert honeypot is not None
            assert honeypot["x"] + honeypot["width"] <= 0
            snap(page, "subscribe")
            page.get_by_label("Email address").fill("Reader@Example.org")
            page.locator("#topic-agents").check()
            page.locator("#topic-medical").check()
            page.get_by_label("Weekly").check()
            page.get_by_role("button", name="Subscribe").click()
            page.get_by_role("heading", name="Check your inbox").wait_for()
            snap(page, "check-inbox")
            reader = store.get_by_email("reader@example.org")
            assert reader is not None
            assert (reader.status, reader.topics, reader.frequency, reader.consent_ip) == (
                "pending", ("agents", "medical"), "weekly", "127.0.0.1")

            message = wait_for_mail(server.sink, 1)
            assert message.rcpt_tos == ("reader@example.org",)
            link = confirm_link(message)
            assert link.startswith(server.base + "/confirm/k1.")
            page.goto(link)
            page.get_by_role("heading", name="Confirm your subscription").wait_for()
            snap(page, "confirm")
            assert store.get(reader.id).status == "pending"  # type: ignore[union-attr]  # opening is not confirming
            page.get_by_role("button", name="Confirm").click()
            page.get_by_role("heading", name="You are subscribed").wait_for()
            assert store.get(reader.id).status == "active"  # type: ignore[union-attr]

            page.get_by_role("link", name="Change topics or frequency").click()
            page.get_by_role("heading", name="Your subscription").wait_for()
            page.locator("#topic-agents").uncheck()
            page.locator("#topic-reasoning").check()
            page.get_by_label("Position of Reasoning").fill("1")
            page.get_by_label("Position of Medical imaging").fill("2")
            page.get_by_label("Daily").check()
            page.get_by_role("button", name="Save preferences").click()
            page.get_by_text("Your preferences are saved.").wait_for()
            snap(page, "manage")
            after = store.get(reader.id)
            assert after is not None
            assert (after.topics, after.frequency) == (("reasoning", "medical"), "daily")

            page.goto(f"{server.base}/unsubscribe/{server.signer.sign('unsubscribe', reader.id)}")
            page.get_by_role("heading", name="Unsubscribe").wait_for()
            assert store.get(reader.id).status == "active"  # type: ignore[union-attr]
            page.get_by_role("button", name="Unsubscribe").click()
            page.get_by_role("heading", name="You are unsubscribed").wait_for()
            snap(page, "unsubscribed")
            assert store.get(reader.id).status == "unsubscribed"  # type: ignore[union-attr]
        finally:
            context.close()
            browser.close()

    # a mail client's RFC 8058 one-click POST: no cookie, no page, no redirect
    other = store.add("other@example.org", topics=["agents"], now=NOW)
    url = f"{server.base}/unsubscribe/{server.signer.sign('unsubscribe', other.id)}"
    response = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False, timeout=10)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert store.get(other.id).status == "unsubscribed"  # type: ignore[union-attr]
    assert len(server.sink.messages) == 1
