"""The web pages through Starlette's TestClient (httpx), with a real SMTP sink: flows, abuse, tokens, headers."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from itsdangerous import TimestampSigner
from starlette.testclient import TestClient

from newsletter.editions.build import build_edition
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.web.app import create_app
from subscribers.tokens import Keyring, TokenSigner
from tests.email_support import NOW, fetch
from tests.mailsink import MailSink
from tests.web_support import SECRET, Site, confirm_link, csrf_token, make_site, web_settings


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with MailSink() as sink:
        yield make_site(tmp_path, sink, monkeypatch)


def test_the_subscribe_page_has_topics_a_honeypot_a_csrf_token_and_security_headers(site: Site) -> None:
    response = site.client.get("/")
    assert response.status_code == 200
    html = response.text
    for topic in site.settings.topics:
        assert f'value="{topic.slug}"' in html
        assert topic.name in html
        assert topic.description in html
    assert 'name="website"' in html
    assert 'tabindex="-1"' in html
    assert csrf_token(html).startswith("k1.")
    headers = response.headers
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]  # falls back to default-src 'none'
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    cookie = headers["set-cookie"]
    assert cookie.startswith("nl_csrf=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert site.client.get("/static/web.css").headers["content-type"] == "text/css; charset=utf-8"


def test_subscribe_confirm_by_post_only(site: Site) -> None:
    assert site.subscribe(" Ada@Example.org ", topics=("medical", "agents")) == 200
    assert len(site.sink.messages) == 1
    message = site.sink.messages[0]
    assert message.rcpt_tos == ("ada@example.org",)
    ada = site.store.get_by_email("ada@example.org")
    assert ada is not None
    assert (ada.status, ada.topics, ada.consent_ip) == ("pending", ("medical", "agents"), "203.0.113.5")
    path = urlsplit(confirm_link(message)).path
    page = site.client.get(path)
    assert page.status_code == 200
    assert "<button" in page.text
    assert "Confirm" in page.text
    assert site.store.get(ada.id).status == "pending"  # type: ignore[union-attr]
    done = site.client.post(path)
    assert done.status_code == 200
    assert "You are subscribed" in done.text
    assert site.store.get(ada.id).status == "active"  # type: ignore[union-attr]
    assert site.client.post(path).status_code == 200  # idempotent


def test_the_answer_is_the_same_whatever_the_address(site: Site) -> None:
    site.store.add("known@example.org", topics=["agents"], now=NOW)
    gone = site.store.add("gone@example.org", topics=["agents"], now=NOW)
    site.store.delete_personal_data(gone.id, now=NOW)
    token = site.form_token()
    answers = set()
    for address in ("new@example.org", "known@example.org", "gone@example.org"):
        response = site.client.post("/subscribe", data={"csrf_token": token, "email": address, "topics": "agents",
                                                         "frequency": "daily", "website": ""})
        answers.add((response.status_code, response.text.replace(address, "")))
    assert len(answers) == 1
    site.drain()
    # a known reader is asked to confirm the request too (nothing changes until then); a deleted one is not
    assert sorted(m.rcpt_tos for m in site.sink.messages) == [("known@example.org",), ("new@example.org",)]


def test_fifty_requests_for_one_address_send_at_most_three_emails(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with MailSink() as sink:
        site = make_site(tmp_path, sink, monkeypatch, per_ip=1000)
        token = site.form_token()
        choices = [("agents",), ("reasoning",), ("medical",), ("agents", "medical"), ("reasoning", "agents")]
        codes = [site.subscribe("victim@example.org", topics=choices[i % 5], token=token) for i in range(50)]
        assert codes == [200] * 50
        assert len(sink.messages) == 3
        # the limit is in the database: a new app on the same database (a restart) still refuses
        again = TestClient(create_app(site.settings, open_database(site.settings.newsletter.database_url)))
        assert again.post("/subscribe", data={"csrf_token": csrf_token(again.get("/").text),
                                              "email": "victim@example.org", "topics": "medical",
                                              "frequency": "weekly"}).status_code == 200
        asyncio.run(again.app.state.web.sender.deliver_due())  # type: ignore[attr-defined]
        assert len(sink.messages) == 3


def test_one_client_ip_is_limited_per_hour(site: Site) -> None:
    token = site.form_token()
    codes = [site.subscribe(f"reader{i}@example.org", token=token) for i in range(11)]
    assert codes == [200] * 10 + [429]
    response = site.client.post("/subscribe", data={"csrf_token": token, "email": "x@example.org",
                                                    "topics": "agents", "frequency": "daily"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3600"
    assert len(site.sink.messages) == 10


def test_a_honeypot_hit_stores_and_sends_nothing(site: Site) -> None:
    response = site.client.post("/subscribe", data={"csrf_token": site.form_token(), "email": "bot@example.org",
                                                    "topics": "agents", "frequency": "daily",
                                                    "website": "http://spam.example"})
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    assert site.store.list_all() == []
    assert site.sink.messages == []


def test_forms_without_a_matching_csrf_token_are_refused(site: Site) -> None:
    good = site.form_token()
    stranger = TestClient(site.client.app)
    other = csrf_token(stranger.get("/").text)  # valid, but for another browser's cookie
    forged = "k1." + good.split(".", 1)[1][::-1]
    for token in (other, forged, "k9.x", "k1."):
        assert site.subscribe("ada@example.org", token=token) == 403, token
    assert site.client.post("/subscribe", data={"email": "ada@example.org", "topics": "agents"}).status_code == 403
    cookieless = TestClient(site.client.app)
    response = cookieless.post("/subscribe", data={"csrf_token": good, "email": "ada@example.org",
                                                   "topics": "agents", "frequency": "daily"})
    assert response.status_code == 403
    assert "cookie" in response.text
    assert site.store.list_all() == []
    assert site.sink.messages == []


def test_bad_forms_get_4xx_with_the_reason(site: Site) -> None:
    token = site.form_token()

    def post(**data: str | list[str]) -> tuple[int, str]:
        response = site.client.post("/subscribe", data={"csrf_token": token, "frequency": "daily", **data})
        return response.status_code, response.text

    code, html = post(email="not-an-address", topics="agents")
    assert code == 400
    assert "not a valid email address: &#39;not-an-address&#39;" in html
    assert 'value="not-an-address"' in html  # the form comes back filled in
    code, html = post(email="ada@example.org", topics=["agents", "quantum"])
    assert (code, "unknown topic &#39;quantum&#39;; valid topics: agents, reasoning, medical" in html) == (400, True)
    code, html = post(email="ada@example.org")
    assert (code, "choose at least one topic" in html) == (400, True)
    assert site.client.post("/subscribe", json={"email": "ada@example.org"}).status_code == 415
    big = site.client.post("/subscribe", data={"csrf_token": token, "email": "a" * 70_000})
    assert big.status_code == 413
    assert site.client.get("/subscribe").status_code == 405
    assert site.store.list_all() == []


def test_forged_expired_and_cross_purpose_tokens_get_4xx(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    ada = site.store.add("ada@example.org", topics=["agents"], status="pending", now=NOW)
    gone = site.store.add("gone@example.org", topics=["agents"], now=NOW)
    site.store.delete_personal_data(gone.id, now=NOW)
    stranger = TokenSigner(Keyring.parse("k1:a-different-secret-01234"))
    for purpose in ("confirm", "manage", "unsubscribe"):
        others = [p for p in ("confirm", "manage", "unsubscribe") if p != purpose]
        bad_tokens = [site.signer.sign(p, ada.id) for p in others]  # type: ignore[arg-type]
        good = site.signer.sign(purpose, ada.id)  # type: ignore[arg-type]
        bad_tokens += [good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
                       stranger.sign(purpose, ada.id),  # type: ignore[arg-type]
                       site.signer.sign(purpose, gone.id),  # type: ignore[arg-type]
                       "k1.bm9uZQ", "nonsense"]
        for token in bad_tokens:
            for method in ("GET", "POST"):
                response = site.client.request(method, f"/{purpose}/{token}",
                                               data={"List-Unsubscribe": "One-Click"} if method == "POST" else None)
                assert response.status_code == 404, (purpose, token, method)
                assert "This link is not valid" in response.text
    start = 1_777_276_800
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: start)
    old = site.signer.sign("confirm", ada.id)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: start + 4 * 86400)
    assert site.client.get(f"/confirm/{old}").status_code == 410
    assert site.client.post(f"/confirm/{old}").status_code == 410
    assert site.store.get(ada.id).status == "pending"  # type: ignore[union-attr]


def test_a_get_on_any_link_changes_nothing(site: Site) -> None:
    pending = site.store.add("pending@example.org", topics=["agents"], status="pending", now=NOW)
    active = site.store.add("active@example.org", topics=["agents"], now=NOW)
    before = site.store.list_all()
    for path in (site.path("confirm", pending.id), site.path("manage", active.id),
                 site.path("manage", active.id) + "?action=unsubscribe&topics=medical&frequency=weekly",
                 site.path("unsubscribe", active.id),
                 site.path("unsubscribe", active.id) + "?List-Unsubscribe=One-Click"):
        for method in ("GET", "HEAD"):
            response = site.client.request(method, path)
            assert response.status_code == 200
            assert "location" not in response.headers
    assert site.client.get("/subscribe?email=x@example.org&topics=agents").status_code == 405
    assert site.store.list_all() == before
    assert site.sink.messages == []


def test_manage_changes_topics_order_and_frequency_with_csrf(site: Site) -> None:
    ada = site.store.add("ada@example.org", topics=["agents"], now=NOW)
    path = site.path("manage", ada.id)
    page = site.client.get(path)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    token = csrf_token(page.text)
    data = {"csrf_token": token, "action": "save", "topics": ["agents", "medical"], "position-agents": "2",
            "position-medical": "1", "frequency": "weekly"}
    assert site.client.post(path, data={**data, "csrf_token": ""}).status_code == 403
    saved = site.client.post(path, data=data)
    assert saved.status_code == 200
    assert "Your preferences are saved." in saved.text
    after = site.store.get(ada.id)
    assert after is not None
    assert (after.topics, after.frequency) == (("medical", "agents"), "weekly")
    assert site.client.post(path, data={**data, "topics": []}).status_code == 400
    assert site.client.post(path, data={**data, "topics": ["quantum"]}).status_code == 400
    assert site.client.post(path, data={**data, "action": "delete-everything"}).status_code == 400
    gone = site.client.post(path, data={"csrf_token": token, "action": "unsubscribe"})
    assert gone.status_code == 200
    assert site.store.get(ada.id).status == "unsubscribed"  # type: ignore[union-attr]
    back = site.client.post(path, data={**data, "action": "resubscribe", "topics": ["reasoning"]})
    assert back.status_code == 200
    again = site.store.get(ada.id)
    assert again is not None
    assert (again.status, again.topics) == ("active", ("reasoning",))
    site.store.mark_bounced(ada.id, now=NOW)
    assert site.client.post(path, data=data).status_code == 409


def test_one_click_unsubscribe_as_a_mail_client_sends_it(site: Site) -> None:
    ada = site.store.add("ada@example.org", topics=["agents"], now=NOW)
    bob = site.store.add("bob@example.org", topics=["agents"], now=NOW)
    mail_client = TestClient(site.client.app, follow_redirects=False)  # no cookies, no CSRF token
    path = site.path("unsubscribe", ada.id)
    for _ in range(2):  # idempotent
        response = mail_client.post(path, content=b"List-Unsubscribe=One-Click",
                                    headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200
        assert "location" not in response.headers
        assert "set-cookie" not in response.headers
        assert site.store.get(ada.id).status == "unsubscribed"  # type: ignore[union-attr]
    multipart = mail_client.post(site.path("unsubscribe", bob.id), files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200
    assert site.store.get(bob.id).status == "unsubscribed"  # type: ignore[union-attr]
    assert site.store.list_active() == []
    carol = site.store.add("carol@example.org", topics=["agents"], now=NOW)
    assert mail_client.post(site.path("unsubscribe", carol.id), data={"other": "x"}).status_code == 400
    assert mail_client.post(site.path("unsubscribe", carol.id)).status_code == 415
    assert site.store.get(carol.id).status == "active"  # type: ignore[union-attr]


def test_no_redirects_anywhere(site: Site) -> None:
    for path in ("/archive/", "/manage/", "/?next=https://evil.example/", "/healthz/", "//evil.example"):
        response = site.client.get(path)
        assert "location" not in response.headers, path
        assert response.status_code in (200, 404)


@pytest.fixture
def edition_site(site: Site) -> Site:
    store = PaperStore(site.engine)
    fetch(site.settings, store)
    editions = EditionStore(site.engine)
    edition = build_edition(site.settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    editions.publish(edition)  # as its send does: an edition is public once it is being sent
    return site


def test_the_archive_shows_past_editions_without_personal_links(edition_site: Site) -> None:
    site = edition_site
    index = site.client.get("/archive")
    assert index.status_code == 200
    assert 'href="/archive/daily-2026-04-27"' in index.text
    page = site.client.get("/archive/daily-2026-04-27")
    assert page.status_code == 200
    assert "style-src 'unsafe-inline'" in page.headers["content-security-policy"]
    assert "script" not in page.headers["content-security-policy"]
    edition = EditionStore(site.engine).get_by_slug("daily-2026-04-27")
    assert edition is not None
    for paper in list(edition.papers.values())[:5]:
        assert paper.paper_id in page.text
    assert "/manage/" not in page.text
    assert "/unsubscribe/" not in page.text
    assert "__nl" not in page.text
    assert site.client.get("/archive/daily-1999-01-01").status_code == 404


def test_an_atom_feed_per_topic_lists_the_papers_sent_under_it(edition_site: Site) -> None:
    response = edition_site.client.get("/topics/agents.atom")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ET.fromstring(response.content)
    assert feed.findtext("a:title", namespaces=ns) == "Test Papers: LLM agents"
    entries = feed.findall("a:entry", ns)
    assert entries
    edition = EditionStore(edition_site.engine).get_by_slug("daily-2026-04-27")
    assert edition is not None
    expected = [edition.papers[e.paper_id].title for e in edition.topic_map["agents"].entries]
    assert [e.findtext("a:title", namespaces=ns) for e in entries] == expected[: len(entries)]
    assert edition_site.client.get("/topics/quantum.atom").status_code == 404


def test_health(site: Site) -> None:
    response = site.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_run_server_serves_on_the_callers_event_loop_until_cancelled(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What `serve` does: the web app as one more task on its loop, signals left to the caller."""
    import asyncio
    import socket

    import httpx

    from newsletter.web.server import run_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with MailSink() as sink:
        monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
        settings = web_settings(tmp_path, sink)
        engine = open_database(settings.newsletter.database_url)
        task = asyncio.create_task(run_server(settings, engine, host="127.0.0.1", port=port, handle_signals=False))
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert (response.status_code, response.json()) == (200, {"status": "ok"})
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
