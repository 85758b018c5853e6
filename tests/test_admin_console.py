"""The operator's console at /admin/ without a browser: accounts from the CLI, sign-in and its defences
(password, rate limit, cookie flags, CSRF, sign-out revoking the cookie), and every page's actions going
through the same use cases as the CLI, with the same words, each one in the audit log.

Real SQLite files, the real CLI (click's runner), the real app through Starlette's TestClient, a real SMTP
sink. The browser walk is in test_admin_browser.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from newsletter.web.admin.charts import bar_chart
from newsletter.web.app import create_app
from tests.admin_support import OPERATOR, PASSWORD, WEEKLY, csrf_of, make_console
from tests.mailsink import MailSink
from tests.support import run, secret_fixture
from tests.test_send import SECRET

secret = secret_fixture(SECRET)


def audit(config: Path, *, limit: int = 50) -> list[dict[str, str]]:
    code, output = run(config, "admin", "audit", "--json", "--limit", str(limit))
    assert code == 0, output
    return list(json.loads(output)["entries"])


def test_until_an_account_exists_admin_shows_sign_in_with_the_command(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink, operator=False)
    page = console.client.get("/admin/")
    assert page.status_code == 200
    assert "Sign in to the console" in page.text
    assert "newsletter admin add you@example.org" in page.text
    other = console.client.get(f"/admin/editions/{console.slug}")
    assert other.status_code == 401
    assert "newsletter admin add" in other.text
    assert console.slug not in other.text
    assert run(console.config, "admin", "list") == (
        0, "no operator accounts; `newsletter admin add EMAIL` creates one\n")


def test_accounts_are_made_changed_and_removed_from_the_cli(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    config = console.config
    assert run(config, "admin", "add", "x@lab.example.org", "--password-stdin", stdin="short\n") == (
        1, "Error: the password must be at least 12 characters long\n")
    assert run(config, "admin", "add", OPERATOR, "--password-stdin", stdin=PASSWORD + "\n") == (
        1, f"Error: {OPERATOR} already has an account (`newsletter admin passwd {OPERATOR}` changes its password)\n")
    code, output = run(config, "admin", "add", "Second@Lab.Example.org", stdin="another long password\n" * 2)
    assert code == 0, output
    assert "added operator second@lab.example.org" in output
    listed = json.loads(run(config, "admin", "list", "--json")[1])
    assert [o["email"] for o in listed["operators"]] == [OPERATOR, "second@lab.example.org"]
    with console.engine.connect() as connection:  # only Argon2id hashes are stored
        stored = list(connection.execute(sa.text("SELECT password_hash FROM operators")).scalars())
    assert len(stored) == 2
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)

    console.sign_in()
    assert console.client.get("/admin/editions").status_code == 200
    code, output = run(config, "admin", "passwd", OPERATOR, "--password-stdin", stdin="a brand new password\n")
    assert (code, output) == (0, f"changed the password of {OPERATOR}; its sessions are signed out\n")
    assert console.client.get("/admin/editions").status_code == 401  # the session ended with the old password
    assert run(config, "admin", "remove", "nobody@lab.example.org") == (
        1, "Error: no operator account 'nobody@lab.example.org' (`newsletter admin list` shows them)\n")
    assert run(config, "admin", "remove", "second@lab.example.org") == (0, "removed operator second@lab.example.org\n")
    assert [(e["actor"], e["action"]) for e in audit(config)][:3] == [
        ("cli", "operator.remove"), ("cli", "operator.passwd"), (OPERATOR, "signin")]


def test_wrong_password_and_unknown_address_are_refused_alike_and_audited(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    client = console.client
    for email, password in ((OPERATOR, "wrong password here"), ("nobody@lab.example.org", PASSWORD)):
        token = csrf_of(client.get("/admin/").text)
        response = client.post("/admin/signin", data={"csrf_token": token, "email": email, "password": password})
        assert response.status_code == 401
        assert "wrong email address or password" in response.text
        assert "nl_admin" not in response.headers.get("set-cookie", "")
    assert client.get("/admin/editions").status_code == 401
    assert [(e["actor"], e["action"], e["detail"]) for e in audit(console.config)][:2] == [
        ("nobody@lab.example.org", "signin.failed", "from 198.51.100.7"),
        (OPERATOR, "signin.failed", "from 198.51.100.7")]


def attempt(client: TestClient, email: str, password: str) -> int:
    token = csrf_of(client.get("/admin/").text)
    return client.post("/admin/signin", data={"csrf_token": token, "email": email, "password": password}).status_code


def test_sign_in_is_rate_limited_per_account(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    guesser = console.client
    assert [attempt(guesser, OPERATOR, f"guess number {i:04d}") for i in range(5)] == [401] * 5
    refused = guesser.post("/admin/signin", data={"csrf_token": csrf_of(guesser.get("/admin/").text),
                                                  "email": OPERATOR, "password": PASSWORD})
    assert refused.status_code == 429  # even the right password, once the account is locked for a while
    assert refused.headers["retry-after"] == "900"
    assert "too many failed sign-ins; wait 15 minutes" in refused.text
    elsewhere = TestClient(console.client.app, base_url="https://testserver", client=("203.0.113.9", 1))
    assert attempt(elsewhere, OPERATOR, PASSWORD) == 429  # per account: from any address
    actions = [e["action"] for e in audit(console.config)]
    assert actions.count("signin.failed") == 5  # each wrong password; the refused-for-rate attempts are not logged
    assert "signin" not in actions


@pytest.mark.slow  # 21 Argon2id checks
def test_sign_in_is_rate_limited_per_network(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    run(console.config, "admin", "add", "other@lab.example.org", "--password-stdin", stdin=PASSWORD + "\n")
    spray = TestClient(console.client.app, base_url="https://testserver", client=("192.0.2.50", 1))
    results = [attempt(spray, f"user{i}@lab.example.org", "not the password") for i in range(20)]
    assert results == [401] * 20
    assert attempt(spray, "other@lab.example.org", PASSWORD) == 429  # per network: this address is cut off
    neighbour = TestClient(console.client.app, base_url="https://testserver", client=("192.0.2.51", 1))
    assert attempt(neighbour, "other@lab.example.org", PASSWORD) == 200  # an IPv4 address is its own network
    assert attempt(spray, OPERATOR, PASSWORD) == 429


def test_the_session_cookie_is_host_only_secure_httponly_strict_over_https(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    page = console.client.get("/admin/")
    response = console.client.post("/admin/signin", data={"csrf_token": csrf_of(page.text), "email": OPERATOR,
                                                          "password": PASSWORD})
    cookie = next(c for c in response.headers.get_list("set-cookie") if "nl_admin" in c)
    name, _, rest = cookie.partition("=")
    assert name == "__Host-nl_admin"
    flags = {part.strip().lower() for part in rest.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert not any(f.startswith("domain") for f in flags)
    assert response.headers["cache-control"] == "no-store"
    assert "script-src" not in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_over_plain_http_the_cookie_has_no_host_prefix(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink, base_url="http://127.0.0.1:8000")
    page = console.client.get("/admin/")
    response = console.client.post("/admin/signin", data={"csrf_token": csrf_of(page.text), "email": OPERATOR,
                                                          "password": PASSWORD})
    cookie = next(c for c in response.headers.get_list("set-cookie") if "nl_admin" in c)
    assert cookie.startswith("nl_admin=")
    assert "secure" not in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert "httponly" in cookie.lower()


def test_a_post_without_the_session_csrf_token_changes_nothing(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    token = console.sign_in()
    path = f"/admin/editions/{console.slug}"
    missing = console.client.post(path, data={"action": "approve"})
    assert missing.status_code == 403
    assert "the form has no security token" in missing.text
    other = TestClient(console.client.app, base_url="https://testserver")
    other_token = console.sign_in(client=other)
    assert other_token != token
    forged = console.client.post(path, data={"action": "approve", "csrf_token": other_token})
    assert forged.status_code == 403
    assert "does not match" in forged.text
    cross = console.client.post(path, data={"action": "approve", "csrf_token": token},
                                headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    assert "not approved" in console.client.get(path).text
    signin_forged = console.client.post("/admin/signin", data={"email": OPERATOR, "password": PASSWORD})
    assert signin_forged.status_code == 403  # the sign-in form has its own token (login CSRF)
    done = console.client.post(path, data={"action": "approve", "csrf_token": token})
    assert done.status_code == 200
    assert f"{console.slug}: approved; it will be sent by `newsletter send`" in done.text


def test_a_stolen_cookie_replayed_after_sign_out_signs_in_nobody(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    token = console.sign_in()
    stolen = dict(console.client.cookies)
    assert "__Host-nl_admin" in stolen
    out = console.client.post("/admin/signout", data={"csrf_token": token})
    assert out.status_code == 200
    assert "You are signed out." in out.text
    thief = TestClient(console.client.app, base_url="https://testserver", cookies=stolen)
    replay = thief.get(f"/admin/editions/{console.slug}")
    assert replay.status_code == 401
    assert "Sign in to the console" in replay.text
    post = thief.post(f"/admin/editions/{console.slug}", data={"action": "approve", "csrf_token": token})
    assert post.status_code == 401
    assert run(console.config, "edition", "show", console.slug)[1].split("\n")[0].endswith("not approved; not sent")
    assert [e["action"] for e in audit(console.config)][:2] == ["signout", "signin"]


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_edition_actions_use_the_cli_checks_and_words_and_are_audited(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    token = console.sign_in()
    path = f"/admin/editions/{console.slug}"
    page = console.client.get(path)
    assert page.status_code == 200
    assert "frame-src 'self'" in page.headers["content-security-policy"]
    papers = re.findall(r'name="paper" value="([^"]+)"', page.text)
    last = papers[-1]

    def act(**data: str) -> str:
        response = console.client.post(path, data={"csrf_token": token, **data})
        assert response.status_code in (200, 409), response.text
        return response.text

    assert f"{console.slug}: pinned {last}" in act(action="pin", paper=last)
    assert f"{console.slug}: dropped {papers[0]}" in act(action="drop", paper=papers[0])
    assert f"{console.slug}: note set" in act(action="note", note="Lab <b>meeting</b> on Thursday")
    assert f"paper &#39;2999.99999&#39; is not in {console.slug}" in act(action="pin", paper="2999.99999")
    _code, shown = run(console.config, "edition", "show", console.slug)
    assert f"  pinned {last}" in shown
    assert f"dropped: {papers[0]}" in shown
    assert "note: Lab <b>meeting</b> on Thursday" in shown
    assert "Lab &lt;b&gt;meeting&lt;/b&gt; on Thursday" in console.client.get(path).text  # escaped on the page
    assert "approved" in act(action="approve")
    frame = re.search(r'src="(/admin/editions/[^"]+/email\?variant=[0-9a-f]+)"', console.client.get(path).text)
    assert frame
    email = console.client.get(frame.group(1))
    assert email.status_code == 200
    assert "Lab &lt;b&gt;meeting&lt;/b&gt; on Thursday" in email.text
    assert email.headers["content-security-policy"].startswith("sandbox;")
    assert email.headers["x-frame-options"] == "SAMEORIGIN"
    assert 'sandbox=""' in console.client.get(path).text

    assert "sent a test copy of" in act(action="copy", to="me@lab.example.org")
    assert [list(m.rcpt_tos) for m in sink.messages] == [["me@lab.example.org"]]
    assert run(console.config, "send", "--frequency", "weekly")[0] == 0
    assert f"{console.slug} is being sent or was sent; it can no longer be changed" in act(action="pin", paper=last)
    assert f"re-queued 0 failed deliveries of {console.slug}" in act(action="retry", state="failed")
    actions = [(e["actor"], e["action"]) for e in audit(console.config)]
    assert actions[:7] == [(OPERATOR, "edition.retry"), (OPERATOR, "edition.pin.refused"), (OPERATOR, "edition.copy"),
                           (OPERATOR, "edition.approve"), (OPERATOR, "edition.pin.refused"), (OPERATOR, "edition.note"),
                           (OPERATOR, "edition.drop")]
    assert "edition.approve" in console.client.get("/admin/audit").text


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_readers_search_history_import_and_export(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink, readers=6)
    token = console.sign_in()
    bounced = console.emails[0]
    found = console.client.get("/admin/readers", params={"status": "bounced"})
    assert "1 reader found" in found.text
    assert bounced in found.text
    retrieval = console.client.get("/admin/readers", params={"topic": "retrieval", "status": "active"})
    listed = json.loads(run(console.config, "subscribers", "list", "--topic", "retrieval", "--status", "active",
                            "--json")[1])
    assert listed["count"] == 4  # a JSON list of topics, filtered in SQL on SQLite and PostgreSQL alike
    assert f"{listed['count']} readers found" in retrieval.text
    assert all(s["email"] in retrieval.text for s in listed["subscribers"])
    weekly = console.client.get("/admin/readers", params={"frequency": "weekly", "q": "WEEKLY.reader"})
    assert "1 reader found" in weekly.text
    assert WEEKLY in weekly.text
    reader_id = re.search(rf'href="/admin/readers/(\d+)">{re.escape(bounced)}<', found.text)
    assert reader_id
    history = console.client.get(f"/admin/readers/{reader_id.group(1)}")
    assert "hard-bounce → bounced" in history.text
    assert "550 5.1.1" in history.text
    assert "Recipient address rejected" in history.text
    assert "bounced since" in history.text  # the suppression entry

    csv = (b"email,name,topics,frequency\nnew.one@example.com,<img src=x onerror=alert(1)>,agents,daily\n"
           b"not-an-address,Bad Row,agents,daily\nnew.two@example.com,Two,unknown-topic,daily\n")
    _cli_code, cli_output = run(console.config, "subscribers", "import", "--dry-run", "-",
                               stdin=csv.decode())
    imported = console.client.post("/admin/readers/import", data={"csrf_token": token},
                                   files={"file": ("list.csv", csv, "text/csv")})
    assert imported.status_code == 422
    for line in cli_output.splitlines()[:-1]:
        if line.startswith("line "):  # the same line-by-line report as the CLI
            assert line.replace("'", "&#39;").replace('"', "&#34;") in imported.text
    assert "line 3:" in imported.text
    assert "line 4:" in imported.text
    assert "3 rows: 1 added, 0 updated, 0 unchanged, 2 not imported" in imported.text
    assert "list.csv: 2 of 3 rows were not imported" in imported.text
    assert cli_output.splitlines()[-1] == "Error: 2 of 3 rows were not imported"
    assert "<img src=x" not in console.client.get("/admin/readers", params={"q": "new.one"}).text

    exported = console.client.get("/admin/readers/export.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "new.one@example.com" in exported.text
    assert bounced in exported.text

    resubscribed = console.client.post(f"/admin/readers/{reader_id.group(1)}",
                                       data={"csrf_token": token, "action": "resubscribe"})
    assert resubscribed.status_code == 200
    assert f"{bounced} (active;" in resubscribed.text
    removed = console.client.post(f"/admin/readers/{reader_id.group(1)}", data={"csrf_token": token,
                                                                              "action": "remove"})
    assert f"unsubscribed {bounced}" in removed.text
    assert json.loads(run(console.config, "subscribers", "show", bounced, "--json")[1])["subscriber"]["status"] == \
        "unsubscribed"
    added = console.client.post("/admin/readers", data={"csrf_token": token, "email": "Added@Example.com",
                                                        "topics": ["agents"], "frequency": "weekly"})
    assert "added added@example.com (active; agents; weekly)" in added.text
    assert [e["action"] for e in audit(console.config)][:4] == ["reader.add", "reader.remove", "reader.resubscribe",
                                                                "reader.export"]


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_topics_mail_and_overview_pages_show_what_status_says(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    console.sign_in()
    status = json.loads(run(console.config, "status", "--json")[1][run(console.config, "status", "--json")[1]
                                                                     .index("{"):])
    overview = console.client.get("/admin/").text
    assert "`serve` is not running" in overview
    assert f"{status['papers']} papers stored, {status['unmatched_papers']} unmatched" in overview
    assert "Complaint rate per edition (line: 0.3%)" in overview
    assert "<svg" in overview
    daily = status["inbound"]["editions"][0]["slug"]  # one of its four readers bounced: 25%, over the 2% line
    assert f"{daily}: complaint rate 0.00%, bounce rate 25.00%" in overview
    assert 'class="bar alert"><title>' + daily + ": 25.00%</title>" in overview
    topics = console.client.get("/admin/topics").text
    assert f"{status['unmatched_papers']}</td>" in topics
    assert console.client.get("/admin/mail").status_code == 200


def test_a_bar_over_the_complaint_line_is_marked_and_the_line_drawn() -> None:
    chart = bar_chart("Complaints", [("daily-1", 0.001), ("daily-2", 0.004)], alert_at=0.003,
                      rule=(0.003, "0.3%"), percent=True)
    assert [b.alert for b in chart.bars] == [False, True]
    assert [b.value for b in chart.bars] == ["0.10%", "0.40%"]
    (rule,) = chart.rules
    assert chart.bars[1].y < rule.y < chart.bars[0].y
    assert bar_chart("None", []).empty


def test_every_console_page_needs_a_session(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    client = TestClient(create_app(console.settings, console.engine), base_url="https://testserver")
    for path in ("/admin/", "/admin/editions", f"/admin/editions/{console.slug}", "/admin/readers",
                 "/admin/readers/1", "/admin/readers/export.csv", "/admin/topics", "/admin/mail", "/admin/audit"):
        response = client.get(path)
        assert response.status_code == (200 if path == "/admin/" else 401), path
        assert "Sign in to the console" in response.text
        assert "Needs attention" not in response.text
        assert console.emails[0] not in response.text


def test_a_session_ends_after_twelve_hours_and_other_front_ends_audit_through_record_action(
        tmp_path: Path, sink: MailSink) -> None:
    from datetime import UTC, datetime, timedelta

    from newsletter.usecases.operators import record_action, session_operator, sign_in

    console = make_console(tmp_path, sink)
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    signed = sign_in(console.engine, OPERATOR, PASSWORD, client="127.0.0.1", now=start)
    assert session_operator(console.engine, signed.token, now=start + timedelta(hours=11, minutes=59)) is not None
    assert session_operator(console.engine, signed.token, now=start + timedelta(hours=12)) is None
    assert session_operator(console.engine, signed.token + "x", now=start) is None

    record_action(console.engine, "api:<b>deploy-bot</b>", "subscriber.add", "<img src=x onerror=alert(1)>")
    console.sign_in()
    page = console.client.get("/admin/audit").text
    assert "api:&lt;b&gt;deploy-bot&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img src=x" not in page
    assert run(console.config, "admin", "audit", "--limit", "2")[1].splitlines()[1].endswith(
        "api:<b>deploy-bot</b>  subscriber.add  <img src=x onerror=alert(1)>")


def test_topics_evaluate_and_suggest_from_the_console_match_the_cli(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    token = console.sign_in()
    sample = tmp_path / "labelled.csv"
    sample.write_text("title,abstract,label\n"
                      "Tool-using LLM agents,Agents that plan and call tools over many steps.,agents\n"
                      "Dense retrieval at scale,A retriever for retrieval-augmented generation.,retrieval\n"
                      "Tax law,Income tax rules for small firms.,\n", encoding="utf-8")
    expected = json.loads(run(console.config, "topics", "evaluate", str(sample), "--json")[1])
    shown = console.client.post("/admin/topics/evaluate", data={"csrf_token": token},
                                files={"file": ("labelled.csv", sample.read_bytes(), "text/csv")})
    assert shown.status_code == 200
    assert f"macro-F1 {expected['macro_f1']}" in shown.text
    bad = console.client.post("/admin/topics/evaluate", data={"csrf_token": token},
                              files={"file": ("mine.csv", b"title,abstract,label\nA,B,quantum\n", "text/csv")})
    assert bad.status_code == 400
    assert "mine.csv, line 2: label &#39;quantum&#39; is not a configured topic" in bad.text
    assert "/tmp" not in bad.text  # the temporary file the upload was written to is never named

    toml = run(console.config, "topics", "suggest")[1]
    suggested = console.client.post("/admin/topics/suggest", data={"csrf_token": token})
    assert suggested.status_code == 200
    assert toml.strip().splitlines()[0].replace('"', "&#34;") in suggested.text
    assert [e["action"] for e in audit(console.config)][:3] == ["topics.suggest", "topics.evaluate", "signin"]


def test_erasing_a_reader_needs_the_box_ticked_then_keeps_only_the_suppression(tmp_path: Path,
                                                                              sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    token = console.sign_in()
    reader = console.emails[1]
    path = re.search(rf'href="(/admin/readers/\d+)">{re.escape(reader)}<',
                     console.client.get("/admin/readers", params={"q": reader}).text)
    assert path
    unticked = console.client.post(path.group(1), data={"csrf_token": token, "action": "delete"})
    assert unticked.status_code == 400
    assert run(console.config, "subscribers", "show", reader)[0] == 0
    erased = console.client.post(path.group(1), data={"csrf_token": token, "action": "delete", "erase": "yes"})
    assert erased.status_code == 200
    assert f"deleted the personal data of {reader}; kept a suppression entry" in erased.text
    shown = json.loads(run(console.config, "subscribers", "show", reader, "--json")[1])
    assert shown["subscriber"] is None
    assert shown["suppressed"]["reason"] == "deleted"
    assert console.client.get(path.group(1)).status_code == 404


def test_readers_come_fifty_to_a_page(tmp_path: Path, sink: MailSink) -> None:
    console = make_console(tmp_path, sink)
    listing = "email,name,topics,frequency\n" + "".join(f"bulk{i:03d}@example.net,,agents,daily\n" for i in range(60))
    assert run(console.config, "subscribers", "import", "-", stdin=listing)[0] == 0
    console.sign_in()
    first = console.client.get("/admin/readers", params={"q": "@example.net"}).text
    assert "60 readers found; page 1 of 2." in first
    assert len(re.findall(r'href="/admin/readers/\d+"', first)) == 50
    assert "bulk049@example.net" in first
    assert "bulk050@example.net" not in first
    link = re.search(r'href="(\?q=[^"]*page=2)">next</a>', first)
    assert link
    second = console.client.get("/admin/readers" + link.group(1).replace("&amp;", "&")).text
    assert "page 2 of 2" in second
    assert len(re.findall(r'href="/admin/readers/\d+"', second)) == 10
    assert "bulk059@example.net" in second
