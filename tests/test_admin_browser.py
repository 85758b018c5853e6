"""The console's "Done when" walk in real headless Chromium (Debian `chromium` driven by Playwright) against a
real uvicorn: a wrong password fails, then the operator signs in, pins a paper of this week's edition,
approves it, sends a test copy (received by the SMTP sink), finds the reader whose email bounced and reads
the evidence, imports a CSV with a bad line and sees that line's error, and signs out. A form posted with the
session's cookie but without its CSRF token changes nothing, and after sign-out the cookie is worth nothing.
Screenshots at 1200 and 375 px go to test-artifacts/ (each page checked for sideways scrolling at 375 px).
Skipped with the reason when /usr/bin/chromium is missing; fails then under CI.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright

from newsletter.web.app import create_app
from tests.admin_support import OPERATOR, PASSWORD, Console, make_console
from tests.browser_support import ARGS, ARTIFACTS, CHROMIUM
from tests.mailsink import MailSink
from tests.support import secret_fixture
from tests.test_send import SECRET

secret = secret_fixture(SECRET)


@pytest.fixture
def served(tmp_path: Path, sink: MailSink) -> Iterator[tuple[str, Console]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    console = make_console(tmp_path, sink, base_url=base)
    server = uvicorn.Server(uvicorn.Config(create_app(console.settings, console.engine), log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listener])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield base, console
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def snap(page: Page, name: str) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    layout = page.evaluate("() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})")
    assert layout["scroll"] <= layout["inner"], f"{name}: horizontal scrolling at {width}px: {layout}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}-{width}px.png"), full_page=True)


def wait_for_mail(sink: MailSink, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(sink.messages) < count:
        assert time.monotonic() < deadline, "the test copy did not arrive"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_an_operator_runs_a_day_from_the_console_in_chromium(served: tuple[str, Console], sink: MailSink,
                                                             tmp_path: Path) -> None:
    base, console = served
    bounced = console.emails[0]
    labelled = tmp_path / "list.csv"
    labelled.write_text("email,name,topics,frequency\nnew.reader@example.com,New Reader,agents,daily\n"
                        "not-an-address,Bad Row,agents,daily\n", encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        try:
            page.goto(base + "/admin/")
            page.get_by_role("heading", name="Sign in to the console").wait_for()
            page.get_by_label("Email address").fill(OPERATOR)
            page.get_by_label("Password").fill("not the password at all")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("wrong email address or password").wait_for()
            snap(page, "signin-refused")
            page.get_by_label("Email address").fill(OPERATOR)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Overview").wait_for()
            snap(page, "overview")
            cookie = next(c for c in context.cookies() if c["name"] == "nl_admin")
            assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

            page.get_by_role("navigation").get_by_role("link", name="Editions").click()
            page.get_by_role("link", name=console.slug).click()
            page.get_by_role("heading", name=console.slug).wait_for()
            pins = page.get_by_role("button", name="Pin ")
            paper = (pins.last.get_attribute("aria-label") or "").removeprefix("Pin ")
            assert paper
            pins.last.click()
            page.get_by_text(f"{console.slug}: pinned {paper}").wait_for()
            page.get_by_role("button", name="Approve").click()
            page.get_by_text(f"{console.slug}: approved").wait_for()
            assert page.locator("#edition-state").get_by_text(f"by {OPERATOR}").count() == 1
            page.locator("iframe.email-frame").first.scroll_into_view_if_needed()  # frames load lazily
            email = page.frame_locator("iframe.email-frame").first.locator("body")
            email.wait_for()
            assert "arxiv.org/abs/" in email.inner_html()  # the real rendered email, its papers linked
            page.get_by_label("To", exact=True).fill("editor@lab.example.org")
            page.get_by_role("button", name="Send test copy").click()
            page.get_by_text("sent a test copy of").wait_for()
            snap(page, "edition")
            wait_for_mail(sink, 1)
            assert list(sink.messages[0].rcpt_tos) == ["editor@lab.example.org"]
            shown = console.client.get(f"/admin/editions/{console.slug}")  # no session: nothing to see there
            assert shown.status_code == 401

            page.get_by_role("navigation").get_by_role("link", name="Readers").click()
            page.locator("select[name=status]").select_option("bounced")
            page.get_by_role("button", name="Find").click()
            page.get_by_text("1 reader found").wait_for()
            page.get_by_role("link", name=bounced).click()
            page.get_by_role("heading", name=bounced).wait_for()
            evidence = page.locator("#evidence")
            evidence.get_by_text("hard-bounce → bounced").wait_for()
            assert "Recipient address rejected" in evidence.inner_text()
            snap(page, "reader")

            page.get_by_role("navigation").get_by_role("link", name="Readers").click()
            page.get_by_label("CSV file").set_input_files(str(labelled))
            page.get_by_role("button", name="Import").click()
            report = page.locator("#import-report")
            report.get_by_text("2 rows: 1 added, 0 updated, 0 unchanged, 1 not imported").wait_for()
            assert "line 3:" in report.inner_text()
            snap(page, "import")

            session = {"nl_admin": cookie["value"]}  # the browser's own cookie, but a form without the token
            forged = httpx.post(f"{base}/admin/editions/{console.slug}", data={"action": "drop", "paper": paper},
                                cookies=session, timeout=10)
            assert forged.status_code == 403
            assert "the form has no security token" in forged.text
            page.goto(f"{base}/admin/editions/{console.slug}")
            listed = page.locator("li", has_text=paper).count()  # one row per section the paper is in
            assert listed >= 1
            assert page.locator(".pin").count() == listed  # still pinned, not dropped

            page.set_viewport_size({"width": 375, "height": 800})
            for path, name in (("/admin/", "overview"), ("/admin/editions", "editions"),
                               (f"/admin/editions/{console.slug}", "edition"), ("/admin/readers", "readers"),
                               ("/admin/audit", "audit"), ("/admin/topics", "topics"), ("/admin/mail", "mail")):
                page.goto(base + path)
                page.locator("main h1").wait_for()
                snap(page, name)
            page.get_by_role("button", name="Sign out").click()
            page.get_by_text("You are signed out.").wait_for()
            snap(page, "signed-out")
        finally:
            context.close()
            browser.close()

    replay = httpx.get(f"{base}/admin/readers", cookies={"nl_admin": cookie["value"]}, timeout=10)
    assert replay.status_code == 401  # the stolen cookie, replayed after sign-out, signs in nobody
    assert bounced not in replay.text
    missing = httpx.post(f"{base}/admin/editions/{console.slug}", data={"action": "drop", "paper": paper},
                         cookies={"nl_admin": cookie["value"]}, timeout=10)
    assert missing.status_code == 401
