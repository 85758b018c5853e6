"""Chat channels end to end: real Apprise posting to stand-in services on 127.0.0.1, through `newsletter send`.

The stand-ins (``tests/chat_support.py``) answer where Apprise lets a user set the address: a JSON webhook
(``json://``), Mattermost (``mmost://``), ntfy (``ntfy://``), a Matrix webhook (``matrix://…?mode=matrix``) and a
Rocket.Chat incoming webhook (``rocket://``).
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.delivery.channels.message import channel_papers, chat_message
from newsletter.delivery.channels.post import service
from newsletter.records.editions import Edition, EditionEntry, EditionPaper, EditionTopic
from newsletter.service.jobs import retry_job
from newsletter.storage.channels import ChannelLedger
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.usecases.channels import post_edition
from subscribers.store import SubscriberStore
from tests.chat_support import ChatServer, Reply
from tests.conftest import ROOT, spawn
from tests.mailsink import MailSink
from tests.support import run as cli_run
from tests.support import secret_fixture

secret = secret_fixture("k1:test-secret-0123456789abcdef")

SERVICES = {
    "lab-json": ("json://127.0.0.1:{port}/hook", "/hook"),
    "lab-mattermost": ("mmost://127.0.0.1:{port}/mm-t0ken", "/hooks/mm-t0ken"),
    "lab-ntfy": ("ntfy://127.0.0.1:{port}/papers", "/"),
    "lab-matrix": ("matrix://bot:mx-t0ken@127.0.0.1:{port}/?mode=matrix", "/api/v1/matrix/hook/mx-t0ken"),
    # an incoming webhook: its two-part token, "/" written %2F, and the channel it posts to
    "lab-rocketchat": ("rocket://rcT0ken%2Frcs3cret@127.0.0.1:{port}/#papers", "/hooks/rcT0ken/rcs3cret"),
}


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


def make_config(folder: Path, sink: MailSink, channels: dict[str, str], *, topics: dict[str, str] | None = None,
                ) -> Path:
    """The offline example sending to ``sink``, with one [[channels]] table per name (its URL's variable)."""
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text += f"\n[delivery]\nport = {sink.port}\nconcurrency = 2\ntimeout_seconds = 5\n"
    for name, env in channels.items():
        text += f'\n[[channels]]\nname = "{name}"\nurl_env = "{env}"\n'
        if topics and name in topics:
            text += f'topics = ["{topics[name]}"]\n'
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _env_name(name: str) -> str:
    return "CHAT_" + name.upper().replace("-", "_")


def setup(tmp_path: Path, sink: MailSink, chat: ChatServer, monkeypatch: pytest.MonkeyPatch,
          names: tuple[str, ...] = ("lab-json",), topics: dict[str, str] | None = None) -> Path:
    for name in names:
        monkeypatch.setenv(_env_name(name), SERVICES[name][0].format(port=chat.port))
    config = make_config(tmp_path, sink, {name: _env_name(name) for name in names}, topics=topics)
    assert cli_run(config, "fetch")[0] == 0
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    store.add("reader@example.com", name="Reader", topics=("agents",), now=datetime.now(UTC))
    return config


def _status(config: Path) -> dict:  # type: ignore[type-arg]
    code, output = cli_run(config, "status", "--json")
    assert code == 0, output
    return json.loads(output)  # type: ignore[no-any-return]


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_send_posts_the_edition_once_to_each_service(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch, names=tuple(SERVICES))
    code, output = cli_run(config, "send")
    assert code == 0, output
    for name in SERVICES:
        assert f"channel {name}: sent" in output
    posts = chat.posts()
    assert sorted(r.path for r in posts) == sorted(path for _, path in SERVICES.values())
    edition = EditionStore(open_database(load_settings(config).newsletter.database_url)).editions(limit=1)[0]
    link = f"http://127.0.0.1:8000/archive/{edition.slug}"
    by_path = {r.path: r.json() for r in posts}
    texts = {
        "lab-json": by_path["/hook"]["message"],
        "lab-mattermost": by_path["/hooks/mm-t0ken"]["text"],
        "lab-ntfy": by_path["/"]["message"],
        "lab-matrix": by_path["/api/v1/matrix/hook/mx-t0ken"]["text"],
        "lab-rocketchat": by_path["/hooks/rcT0ken/rcs3cret"]["text"],
    }
    full = EditionStore(open_database(load_settings(config).newsletter.database_url)).get_by_id(edition.id)
    assert full is not None
    best = max((e for t in full.topics for e in t.entries), key=lambda e: e.rank)
    best_url = full.papers[best.paper_id].abs_url
    for name, text in texts.items():
        assert link in text, name
        assert best_url, name
        assert best_url in text, name  # the top paper's title links to it
    assert by_path["/hook"]["title"].startswith("Trending Papers (offline example): daily edition of ")
    assert by_path["/"]["topic"] == "papers"
    assert len(texts["lab-mattermost"]) <= 4000
    assert "Trending Papers (offline example): daily edition" in texts["lab-mattermost"]  # no title: in the body
    assert by_path["/hooks/rcT0ken/rcs3cret"]["channel"] == "#papers"
    assert len(texts["lab-rocketchat"]) <= 1000  # Apprise's Rocket.Chat limit, title and body together
    assert texts["lab-rocketchat"].startswith("**Trending Papers (offline example): daily edition")  # Markdown
    # A second send posts nothing more; status shows one sent row per channel.
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert len(chat.posts()) == len(SERVICES)
    assert "channel lab-json: unchanged" in output
    rows = _status(config)["editions"][0]["channels"]
    assert {(r["channel"], r["state"]) for r in rows} == {(name, "sent") for name in SERVICES}


def test_a_channel_gets_only_its_topics_papers(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch, topics={"lab-json": "retrieval"})
    assert cli_run(config, "send")[0] == 0
    engine = open_database(load_settings(config).newsletter.database_url)
    edition = EditionStore(engine).get_by_id(EditionStore(engine).editions(limit=1)[0].id)
    assert edition is not None
    inside = {edition.papers[e.paper_id].abs_url for t in edition.topics if t.slug == "retrieval" for e in t.entries}
    outside = {edition.papers[e.paper_id].abs_url for t in edition.topics if t.slug != "retrieval"
               for e in t.entries} - inside
    message = chat.posts()[0].json()["message"]
    assert any(url and url in message for url in inside)
    assert not any(url and f"({url})" in message for url in outside)


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_429_with_retry_after_defers_the_row_until_then(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    chat.replies.append(Reply(status=429, headers={"Retry-After": "300"}, body=b'{"error": "slow down"}'))
    before = datetime.now(UTC)
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert "channel lab-json: deferred (429 rate limited (Retry-After 300))" in output
    row = _status(config)["editions"][0]["channels"][0]
    assert row["state"] == "deferred"
    assert row["last_code"] == 429
    due = datetime.fromisoformat(row["next_attempt_at"])
    assert before + timedelta(seconds=299) <= due <= datetime.now(UTC) + timedelta(seconds=301)
    assert cli_run(config, "send")[0] == 0  # before Retry-After: not posted again
    assert len(chat.posts()) == 1
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    edition = EditionStore(engine).get_by_id(EditionStore(engine).editions(limit=1)[0].id)
    assert edition is not None
    results = post_edition(settings, engine, edition, clock=lambda: datetime.now(UTC) + timedelta(seconds=301))
    assert [(r.channel, r.state) for r in results] == [("lab-json", "sent")]
    assert len(chat.posts()) == 2
    assert ChannelLedger(engine).rows(edition.id)[0]["state"] == "sent"


def test_a_server_error_defers_and_the_next_due_run_posts(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    chat.replies.append(Reply(status=503))
    _code, output = cli_run(config, "--verbose", "send")
    assert "channel lab-json: deferred (503 from the service)" in output
    assert f"127.0.0.1:{chat.port}" not in output  # no line names the URL (a secret)
    row = _status(config)["editions"][0]["channels"][0]
    assert row["state"] == "deferred"
    assert row["attempts"] == 1


@pytest.mark.parametrize("code", [404, 410, 401])
def test_a_revoked_webhook_pauses_the_channel_until_resumed(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                                            monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    chat.replies.append(Reply(status=code, body=b'{"message": "Invalid webhook"}'))
    _, output = cli_run(config, "send")
    assert f"channel lab-json: pending ({code}: the service refused the channel's URL" in output
    view = _status(config)
    assert view["channels"][0]["paused"].startswith(f"{code}: the service refused")
    _, output = cli_run(config, "status")
    assert "channel lab-json: PAUSED" in output
    _, output = cli_run(config, "send")  # paused: not retried
    assert "channel lab-json: paused" in output
    assert len(chat.posts()) == 1
    _, output = cli_run(config, "channels", "list")
    assert "lab-json: daily, all topics, url from $CHAT_LAB_JSON; PAUSED:" in output
    assert cli_run(config, "channels", "resume", "lab-json")[0] == 0
    _, output = cli_run(config, "send")
    assert "channel lab-json: sent" in output
    assert len(chat.posts()) == 2
    assert _status(config)["channels"][0]["paused"] is None


def test_unreachable_service_defers(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    chat.httpd.server_close()  # nothing listens on the port any more
    monkeypatch.setenv("CHAT_LAB_JSON", f"json://127.0.0.1:{chat.port}/hook")
    _, output = cli_run(config, "send")
    assert "channel lab-json: deferred (could not connect:" in output


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_sigkill_mid_post_never_posts_twice(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    hold = threading.Event()
    chat.replies.append(Reply(hold=hold))
    process = spawn(["--config", str(config), "send"])
    assert chat.arrived.wait(60), "the post never arrived"
    process.send_signal(signal.SIGKILL)  # killed while the service has the post and has not answered
    process.wait(timeout=30)
    hold.set()
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert len(chat.posts()) == 1
    row = _status(config)["editions"][0]["channels"][0]
    assert row["state"] == "ambiguous"
    assert "not posted again" in row["last_message"]
    cli_run(config, "send")
    assert len(chat.posts()) == 1


def test_channels_test_and_list(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    _, output = cli_run(config, "channels", "list")
    assert "lab-json: daily, all topics, url from $CHAT_LAB_JSON; active; last: never posted" in output
    code, output = cli_run(config, "channels", "test", "lab-json")
    assert code == 0, output
    assert "test message posted" in output
    assert "A test message from" in chat.posts()[0].json()["message"]
    _, output = cli_run(config, "channels", "list")
    assert "last: test sent: 200 accepted" in output
    code, output = cli_run(config, "channels", "test", "nope")
    assert code == 1
    assert "no channel named 'nope'; configured channels: lab-json" in output
    assert "Traceback" not in output
    chat.replies.append(Reply(status=500))
    code, output = cli_run(config, "channels", "test", "lab-json")
    assert code == 1
    assert "test message deferred: 500 from the service" in output
    monkeypatch.delenv("CHAT_LAB_JSON")
    code, output = cli_run(config, "channels", "test", "lab-json")
    assert code == 1
    assert "CHAT_LAB_JSON (url_env) holding its Apprise URL is not set" in output
    monkeypatch.setenv("CHAT_LAB_JSON", "nosuchservice://x")
    code, output = cli_run(config, "channels", "test", "lab-json")
    assert code == 1
    assert "not an Apprise URL" in output
    assert "nosuchservice://x" not in output


def test_a_channel_naming_an_unknown_topic_is_a_config_error(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, {"lab": "CHAT_LAB"}, topics={"lab": "no-such-topic"})
    code, output = cli_run(config, "channels", "list")
    assert code == 1
    assert "channels[0].topics: no topic 'no-such-topic'" in output


def _edition(papers: int) -> Edition:
    entries = tuple(EditionEntry(paper_id=f"p{i}", strength=1.0, rank=100.0 - i) for i in range(papers))
    long = "A sentence that goes on " + "and on " * 300 + "until it ends. Then a second one."
    return Edition(
        id=1, frequency="daily", date=date(2026, 11, 26), slug="daily-2026-11-26",
        window_start=datetime(2026, 11, 25, tzinfo=UTC), cutoff=datetime(2026, 11, 26, tzinfo=UTC),
        created=datetime(2026, 11, 26, tzinfo=UTC),
        papers={f"p{i}": EditionPaper(paper_id=f"p{i}", title=f"Paper *{i}* <b>" + "word " * 60, abstract=long,
                                      abs_url=f"https://arxiv.org/abs/2611.{i:05d}", upvotes=i)
                for i in range(papers)},
        topics=(EditionTopic(slug="agents", name="Agents", entries=entries),),
    )


@pytest.mark.parametrize("url", ["rocket://user:pass@127.0.0.1/#general", "discord://123/abc",
                                 "mmost://127.0.0.1/t0ken", "ntfy://127.0.0.1/papers", "json://127.0.0.1/h",
                                 "tgram://123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/12345"])
def test_the_message_fits_each_services_limit(url: str) -> None:
    target = service(url)
    edition = _edition(40)
    papers = channel_papers(edition, ())
    link = "https://papers.example.org/archive/daily-2026-11-26"
    message = chat_message(name="Trending Papers", edition=edition, papers=papers, count=30, edition_url=link,
                           body_limit=target.body_limit, title_limit=target.title_limit)
    assert len(message.body) + (len(message.title) if target.title_limit == 0 else 0) <= target.body_limit
    assert len(message.title) <= max(target.title_limit, 0) or not message.title
    assert link in message.body  # the way to the rest is always there
    assert f"{40 - message.papers} more on the web: {link}" in message.body
    assert message.papers >= 1
    assert "<b>" not in message.body
    assert "\\*" in message.body
    # one sentence at most: the TL;DR's, here the one that fits (the first runs to 2,100 characters)
    assert "until it ends" not in message.body


def test_serves_retry_run_posts_a_deferred_channel_row_once_due(tmp_path: Path, sink: MailSink, chat: ChatServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, sink, chat, monkeypatch)
    chat.replies.append(Reply(status=429, headers={"Retry-After": "60"}))
    assert cli_run(config, "send")[0] == 0
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    result = retry_job(settings, engine, clock=lambda: datetime.now(UTC), stop=threading.Event())
    assert "channels" not in result.summary  # not due yet
    assert len(chat.posts()) == 1
    result = retry_job(settings, engine, clock=lambda: datetime.now(UTC) + timedelta(seconds=61),
                       stop=threading.Event())
    assert "channels: lab-json sent" in result.summary
    assert len(chat.posts()) == 2


def test_every_service_url_in_the_docs_is_one_apprise_can_post_to() -> None:
    table = (ROOT / "docs" / "channels.md").read_text(encoding="utf-8").split("## Services", 1)[1]
    rows = re.findall(r"^\| ([^|]+) \| `([^`]+)` \| ([\d,]+) \|$", table, flags=re.MULTILINE)
    assert len(rows) >= 12
    for label, url, limit in rows:
        target = service(url)
        assert target.body_limit == int(limit.replace(",", "")), label
    services = {label.split(" (")[0] for label, _, _ in rows}
    assert {"Slack", "Discord", "Microsoft Teams", "Matrix", "Mattermost", "Telegram", "ntfy", "Rocket.Chat",
            "a plain JSON webhook"} <= services
