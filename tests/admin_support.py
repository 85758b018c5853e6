"""Set-up shared by the console tests: the offline example's papers, a built edition, readers, an operator
account made with the real CLI, and helpers to sign in and post forms the way a browser does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.storage.db import open_database
from newsletter.web.app import create_app
from tests.inbound_support import DOMAIN, dsn
from tests.mailsink import MailSink
from tests.support import run
from tests.test_send import add_subscribers, make_config

OPERATOR = "editor@lab.example.org"
PASSWORD = "correct horse battery staple"
WEEKLY = "weekly.reader@example.com"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@dataclass
class Console:
    config: Path
    settings: Settings
    engine: Engine
    client: TestClient
    emails: list[str]
    slug: str

    def sign_in(self, email: str = OPERATOR, password: str = PASSWORD, *, client: TestClient | None = None) -> str:
        """Sign in; returns the page's session CSRF token (the overview's sign-out form carries it)."""
        browser = client or self.client
        page = browser.get("/admin/")
        response = browser.post("/admin/signin", data={"csrf_token": csrf_of(page.text), "email": email,
                                                      "password": password})
        assert response.status_code == 200, response.text
        return csrf_of(response.text)


def make_console(tmp_path: Path, sink: MailSink, *, readers: int = 4, base_url: str = "https://papers.example.org",
                 operator: bool = True) -> Console:
    """A year's first day, in small: the offline example fetched, ``readers`` daily readers and one weekly
    reader; today's daily edition sent through ``sink``, and the first reader's copy bounced back (a DSN read
    by `newsletter inbound --file`); this week's weekly edition built, not sent (``Console.slug``); and an
    operator account (``OPERATOR``/``PASSWORD``) added with `newsletter admin add --password-stdin`."""
    config = make_config(tmp_path, sink, extra=f'\n[inbound]\ndomain = "{DOMAIN}"\n')
    config.write_text(config.read_text(encoding="utf-8").replace("http://127.0.0.1:8000", base_url), encoding="utf-8")
    assert run(config, "fetch")[0] == 0
    emails = add_subscribers(config, readers)
    assert run(config, "subscribers", "add", WEEKLY, "--topics", "agents,retrieval", "--frequency", "weekly")[0] == 0
    code, output = run(config, "send")
    assert code == 0, output
    sender = next(m.mail_from for m in sink.messages if m.rcpt_tos[0] == emails[0])
    report = tmp_path / "dsn.eml"
    report.write_bytes(dsn(to=sender, final_recipient=emails[0], status="5.1.1"))
    code, output = run(config, "inbound", "--file", str(report), "--rcpt", sender)
    assert "hard-bounce → applied" in output, output
    sink.messages.clear()
    code, output = run(config, "edition", "show", "--frequency", "weekly")
    assert code == 0, output
    slug = output.split(":")[0]
    if operator:
        code, output = run(config, "admin", "add", OPERATOR, "--password-stdin", stdin=PASSWORD + "\n")
        assert code == 0, output
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    scheme = "https" if base_url.startswith("https") else "http"
    client = TestClient(create_app(settings, engine), base_url=f"{scheme}://testserver", follow_redirects=False,
                        client=("198.51.100.7", 40000))
    return Console(config, settings, engine, client, emails, slug)
