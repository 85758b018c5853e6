"""Sign-ups under abuse (issue 17, items 3–9 and 11): rate limits, proxies, mailbox floods, strangers' posts,
equal work, validation and error pages, non-ASCII addresses. Real app, real SQLite file, real SMTP sink."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from newsletter.config import load_settings
from newsletter.service.jobs import housekeeping_job
from newsletter.web.app import create_app
from subscribers.addresses import ip_hash
from subscribers.rate_limit_store import RateLimits, mailbox_key
from subscribers.schema import rate_events
from tests.email_support import NOW
from tests.mailsink import MailSink
from tests.web_support import Site, confirm_link, csrf_token, make_site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with MailSink() as sink:
        yield make_site(tmp_path, sink, monkeypatch, per_ip=1000)


def _client(site: Site, ip: str, **options: object) -> TestClient:
    return TestClient(site.client.app, client=(ip, 4000), follow_redirects=False, **options)  # type: ignore[arg-type]


def _post(client: TestClient, email: str, *, topics: tuple[str, ...] = ("agents",), frequency: str = "daily",
          headers: dict[str, str] | None = None) -> int:
    token = csrf_token(client.get("/").text)
    return client.post("/subscribe", headers=headers or {}, data={
        "csrf_token": token, "email": email, "topics": list(topics), "frequency": frequency}).status_code


def _drain(client: TestClient) -> None:
    asyncio.run(client.app.state.web.sender.deliver_due())  # type: ignore[attr-defined]


# --- 3. rate-limit cleanup ---------------------------------------------------------------------------------

def test_old_rate_events_are_pruned_by_housekeeping_not_by_each_sign_up(site: Site) -> None:
    limits = RateLimits(site.engine)
    for i in range(50):
        limits.allow_subscribe_from(f"192.0.2.{i}", limit=10, now=NOW - timedelta(days=30))
    assert site.subscribe("ada@example.org") == 200
    with site.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(rate_events)).scalar_one() >= 51
    assert "ix_rate_events_created" in {i["name"] for i in sa.inspect(site.engine).get_indexes("rate_events")}
    result = housekeeping_job(site.settings, site.engine, clock=lambda: NOW + timedelta(days=1),
                              stop=__import__("threading").Event())
    assert result.details["pruned_rate_events"] == 50


# --- 4 and 11. client IP: IPv6 /64, trusted proxies only, parsed ---------------------------------------------

def test_one_ipv6_slash_64_is_one_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MailSink() as sink:
        site = make_site(tmp_path, sink, monkeypatch, per_ip=3)
        codes = [_post(_client(site, f"2001:db8:1:2::{i:x}"), f"r{i}@example.org") for i in range(1, 5)]
        assert codes == [200, 200, 200, 429]
        assert _post(_client(site, "2001:db8:1:3::1"), "other@example.org") == 200  # the next /64


def _proxied_site(tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch, trusted: str) -> Site:
    site = make_site(tmp_path, sink, monkeypatch, per_ip=2)
    path = tmp_path / "config.toml"
    path.write_text(path.read_text().replace("[web]\n", f"[web]\ntrusted_proxies = [{trusted}]\n"))
    site.settings = load_settings(path)
    site.client = TestClient(create_app(site.settings, site.engine), client=("127.0.0.1", 4000))
    return site


def test_x_forwarded_for_counts_only_from_a_trusted_proxy_and_is_stored_as_an_ip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MailSink() as sink:
        site = _proxied_site(tmp_path, sink, monkeypatch, '"127.0.0.1/32"')
        spoofed = {"x-forwarded-for": "6.6.6.6, 198.51.100.7"}  # nginx appends the real peer to the client's text
        assert _post(site.client, "a@example.org", headers=spoofed) == 200
        assert site.store.get_by_email("a@example.org").consent_ip == "198.51.100.7"  # type: ignore[union-attr]
        # each client behind the proxy has its own bucket: the proxy is not one client for the whole site
        assert [_post(site.client, f"b{i}@example.org", headers={"x-forwarded-for": "198.51.100.8"})
                for i in range(3)] == [200, 200, 429]
        assert _post(site.client, "c@example.org", headers={"x-forwarded-for": "198.51.100.9"}) == 200
        long_text = "x" * 110
        assert _post(site.client, "d@example.org", headers={"x-forwarded-for": long_text}) == 200
        assert site.store.get_by_email("d@example.org").consent_ip == "127.0.0.1"  # type: ignore[union-attr]
        # from a peer that is not a trusted proxy, the header is ignored
        direct = _client(site, "203.0.113.20")
        assert _post(direct, "e@example.org", headers={"x-forwarded-for": "198.51.100.50"}) == 200
        assert site.store.get_by_email("e@example.org").consent_ip == "203.0.113.20"  # type: ignore[union-attr]


def test_without_trusted_proxies_x_forwarded_for_is_ignored(site: Site) -> None:
    client = _client(site, "127.0.0.1")
    assert _post(client, "a@example.org", headers={"x-forwarded-for": "198.51.100.7"}) == 200
    assert site.store.get_by_email("a@example.org").consent_ip == "127.0.0.1"  # type: ignore[union-attr]
    with site.engine.connect() as connection:
        keys = set(connection.execute(sa.select(rate_events.c.key).where(rate_events.c.kind == "subscribe-ip"))
                   .scalars())
    assert keys == {ip_hash("127.0.0.1")}


# --- 5. one mailbox ------------------------------------------------------------------------------------------

def test_tagged_and_dotted_variants_share_one_mailbox_quota(site: Site) -> None:
    for i in range(12):
        assert site.subscribe(f"flood+{i}@example.com") == 200
    assert len(site.sink.messages) == 3
    for spelling in ("a.d.a@gmail.com", "ADA+x@googlemail.com", "ad.a+y@gmail.com", "ada@gmail.com"):
        site.subscribe(spelling)
    assert len(site.sink.messages) == 6
    assert mailbox_key("A.da+news@GoogleMail.com") == mailbox_key("ada@gmail.com")
    assert mailbox_key("a.da@example.com") != mailbox_key("ada@example.com")  # dots matter elsewhere


def test_a_repeated_request_resends_the_same_email_instead_of_using_up_the_quota(site: Site) -> None:
    web = site.client.app.state.web  # type: ignore[attr-defined]
    now = [NOW]
    web.clock = lambda: now[0]
    for _ in range(10):  # a stranger repeating the owner's request
        assert site.subscribe("owner@example.org", topics=("agents",)) == 200
    assert len(site.sink.messages) == 1
    now[0] = NOW + timedelta(hours=2)
    site.subscribe("owner@example.org", topics=("agents",))
    assert len(site.sink.messages) == 2
    first, second = (confirm_link(m).split("/confirm/")[1].split(".")[1] for m in site.sink.messages)
    assert first == second  # the same request (the token names it; its timestamp is the sending time)
    used = RateLimits(site.engine).count("confirmation", mailbox_key("owner@example.org"),
                                         window=timedelta(days=7), now=now[0])
    assert used == 1  # eleven requests, one slot of the quota
    site.subscribe("owner@example.org", topics=("medical",))  # the owner's own, different request still goes
    assert len(site.sink.messages) == 3
    assert confirm_link(site.sink.messages[-1]).split("/confirm/")[1].split(".")[1] != first


# --- 6. a stranger's post never rewrites a reader; a link applies its own request ------------------------------

def test_a_strangers_sign_up_leaves_an_unsubscribed_reader_alone(site: Site) -> None:
    assert site.subscribe("reader@example.org", topics=("agents",)) == 200
    own_link = urlsplit(confirm_link(site.sink.messages[-1])).path
    assert site.client.post(own_link).status_code == 200
    reader = site.store.get_by_email("reader@example.org")
    assert reader is not None
    site.store.unsubscribe(reader.id, now=NOW)
    before = site.store.get(reader.id)
    stranger = _client(site, "198.51.100.66")
    assert _post(stranger, "reader@example.org", topics=("medical", "reasoning"), frequency="weekly") == 200
    _drain(stranger)
    assert site.store.get(reader.id) == before  # still unsubscribed, same topics, same consent IP
    assert site.client.post(own_link).status_code == 410  # a used link never re-activates
    assert site.store.get(reader.id) == before


def test_a_confirm_link_applies_only_the_request_it_was_sent_for(site: Site) -> None:
    owner = _client(site, "203.0.113.1")
    assert _post(owner, "reader@example.org", topics=("agents",)) == 200
    _drain(owner)
    stranger = _client(site, "198.51.100.66")
    assert _post(stranger, "reader@example.org", topics=("medical", "reasoning"), frequency="weekly") == 200
    _drain(stranger)
    own_link, strangers_link = (urlsplit(confirm_link(m)).path for m in site.sink.messages)
    assert own_link != strangers_link
    assert site.client.post(own_link).status_code == 200
    after = site.store.get_by_email("reader@example.org")
    assert after is not None
    assert (after.status, after.topics, after.frequency, after.consent_ip) == ("active", ("agents",), "daily",
                                                                              "203.0.113.1")
    # only the second link (it went to the same mailbox) applies the second request
    assert site.client.post(strangers_link).status_code == 200
    applied = site.store.get(after.id)
    assert applied is not None
    assert (applied.topics, applied.frequency, applied.consent_ip) == (("medical", "reasoning"), "weekly",
                                                                      "198.51.100.66")


# --- 7. the same work for every address -------------------------------------------------------------------------

def test_a_sign_up_runs_the_same_statements_for_known_and_unknown_states(site: Site) -> None:
    site.store.add("active@example.org", topics=["agents"], now=NOW)
    gone = site.store.add("gone@example.org", topics=["agents"], now=NOW)
    site.store.unsubscribe(gone.id, now=NOW)
    site.subscribe("pending@example.org")
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split()[0].upper())

    counts = {}
    sa.event.listen(site.engine, "before_cursor_execute", count)
    try:
        for address in ("active@example.org", "gone@example.org", "pending@example.org"):
            token = site.form_token()
            statements.clear()
            site.client.post("/subscribe", data={"csrf_token": token, "email": address, "topics": "reasoning",
                                                 "frequency": "weekly"})
            counts[address] = sorted(statements)
    finally:
        sa.event.remove(site.engine, "before_cursor_execute", count)
    assert counts["active@example.org"] == counts["gone@example.org"] == counts["pending@example.org"]


# --- 8. validation and error pages ------------------------------------------------------------------------------

def test_bad_positions_get_the_form_back_with_400(site: Site) -> None:
    reader = site.store.add("ada@example.org", topics=["agents"], now=NOW)
    path = site.path("manage", reader.id)
    token = csrf_token(site.client.get(path).text)
    for bad in ("²", "9" * 5000, "-1", "1e3"):
        response = site.client.post(path, data={"csrf_token": token, "action": "save", "topics": "agents",
                                                "position-agents": bad, "frequency": "daily"})
        assert response.status_code == 400, bad
        assert "position of a topic must be a whole number" in response.text
        assert response.headers["x-frame-options"] == "DENY"


def test_every_error_page_has_the_security_headers(site: Site) -> None:
    client = TestClient(site.client.app, raise_server_exceptions=False)
    too_big = client.post("/subscribe", content=b"a=" + b"x" * 100_000,
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert too_big.status_code == 413
    with site.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE subscribers"))
    broken = client.get(site.path("manage", 1))
    assert broken.status_code == 500
    for response in (too_big, broken):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "Traceback" not in response.text


# --- 9. non-ASCII addresses -------------------------------------------------------------------------------------

def test_a_non_ascii_mailbox_is_refused_at_sign_up_and_an_idn_domain_is_delivered(site: Site) -> None:
    token = site.form_token()
    response = site.client.post("/subscribe", data={"csrf_token": token, "email": "jörg@example.org",
                                                    "topics": "agents", "frequency": "daily"})
    assert response.status_code == 400
    assert "non-ASCII characters" in response.text
    assert site.store.get_by_email("jörg@example.org") is None
    assert site.subscribe("ada@bücher.example") == 200
    assert [m.rcpt_tos for m in site.sink.messages] == [("ada@xn--bcher-kva.example",)]


# --- 10. CSRF: where the POST comes from, a __Host- cookie, a token bound to its form ---------------------------

def test_csrf_refuses_other_sites_other_forms_and_uses_a_host_cookie_over_https(site: Site) -> None:
    token = site.form_token()
    data = {"csrf_token": token, "email": "a@example.org", "topics": "agents", "frequency": "daily"}
    for headers in ({"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                    {"origin": "https://evil.example"}, {"origin": "null", "sec-fetch-site": "cross-site"}):
        response = site.client.post("/subscribe", data=data, headers=headers)
        assert response.status_code == 403, headers
        assert "another site" in response.text
    for headers in ({"sec-fetch-site": "same-origin", "origin": "null"},  # Chromium under no-referrer
                    {"origin": "https://papers.example.org"}, {"origin": "http://testserver"}):
        assert site.client.post("/subscribe", data=data, headers=headers).status_code == 200, headers
    # the subscribe page's token does not work on a reader's manage form (and the other way round)
    reader = site.store.add("ada@example.org", topics=["agents"], now=NOW)
    path = site.path("manage", reader.id)
    stolen = site.client.post(path, data={"csrf_token": token, "action": "save", "topics": "medical",
                                          "frequency": "daily"})
    assert stolen.status_code == 403
    assert site.store.get(reader.id).topics == ("agents",)  # type: ignore[union-attr]
    manage_token = csrf_token(site.client.get(path).text)
    assert site.client.post("/subscribe", data={**data, "csrf_token": manage_token}).status_code == 403
    secure = TestClient(site.client.app, base_url="https://papers.example.org")
    cookie = secure.get("/").headers["set-cookie"]
    assert cookie.startswith("__Host-nl_csrf=")
    assert "Secure" in cookie
    assert "Path=/" in cookie
    assert "Domain" not in cookie
    secure_token = csrf_token(secure.get("/").text)
    assert secure.post("/subscribe", data={**data, "csrf_token": secure_token}).status_code == 200
