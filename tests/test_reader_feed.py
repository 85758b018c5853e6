"""A reader's private feed, after a real `send`: Atom and JSON Feed of exactly that reader's papers.

Atom is parsed with lxml and checked against RFC 4287's required elements; JSON Feed against 1.1's required
fields. The address comes from the manage page; rotating it (the manage page's button) or unsubscribing
ends it; a current copy gets a 304.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree
from starlette.testclient import TestClient

from newsletter.config import load_settings
from newsletter.storage.db import open_database
from newsletter.storage.reader_feeds import ReaderFeeds
from newsletter.web.app import create_app
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.conftest import ROOT
from tests.mailsink import MailSink
from tests.support import run as cli_run
from tests.web_support import csrf_token

SECRET = "k1:test-secret-0123456789abcdef"
A = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def sent(tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, int]]:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text += f"\n[delivery]\nport = {sink.port}\nconcurrency = 2\ntimeout_seconds = 5\n"
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    assert cli_run(config, "fetch")[0] == 0
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    ids = {}
    for address, topics in (("ada@example.com", ("agents",)),
                            ("bo@example.com", ("retrieval", "efficient-training"))):
        ids[address] = store.add(address, name="", topics=topics, now=datetime.now(UTC)).id
    code, output = cli_run(config, "send")
    assert code == 0, output
    return config, ids


def _client(config: Path) -> tuple[TestClient, TokenSigner]:
    settings = load_settings(config)
    engine = open_database(settings.newsletter.database_url)
    return TestClient(create_app(settings, engine), follow_redirects=False), TokenSigner(Keyring.parse(SECRET))


def _feed_paths(client: TestClient, signer: TokenSigner, subscriber_id: int) -> tuple[str, str, str]:
    manage = f"/manage/{signer.sign('manage', subscriber_id)}"
    html = client.get(manage).text
    atom = re.search(r'href="([^"]+)" id="feed-atom"', html)
    json_ = re.search(r'href="([^"]+)" id="feed-json"', html)
    assert atom is not None
    assert json_ is not None
    return manage, urlsplit(atom.group(1)).path, urlsplit(json_.group(1)).path


def _carried(config: Path, subscriber_id: int) -> set[str]:
    engine = open_database(load_settings(config).newsletter.database_url)
    return {p for e in ReaderFeeds(engine).editions(subscriber_id, limit=100) for p in e.paper_ids}


def _check_atom(body: bytes) -> list[etree._Element]:
    root = etree.fromstring(body)
    assert root.tag == f"{A}feed"
    for name in ("id", "title", "updated"):  # RFC 4287 4.1.1: exactly one each
        assert len(root.findall(f"{A}{name}")) == 1, name
    datetime.fromisoformat(root.findtext(f"{A}updated"))  # an RFC 3339 date-time
    entries = root.findall(f"{A}entry")
    has_feed_author = root.find(f"{A}author/{A}name") is not None
    for entry in entries:
        for name in ("id", "title", "updated"):  # 4.1.2
            assert len(entry.findall(f"{A}{name}")) == 1, name
        datetime.fromisoformat(entry.findtext(f"{A}updated"))
        assert has_feed_author or entry.find(f"{A}author") is not None
        assert entry.find(f"{A}content") is not None or entry.find(f"{A}link[@rel='alternate']") is not None
        assert len(entry.findall(f"{A}link[@rel='alternate']")) <= 1
    ids = [e.findtext(f"{A}id") for e in entries]
    assert len(ids) == len(set(ids))
    return entries


def test_the_private_feed_shows_exactly_that_readers_papers(sent: tuple[Path, dict[str, int]]) -> None:
    config, ids = sent
    client, signer = _client(config)
    for address, subscriber_id in ids.items():
        _, atom_path, json_path = _feed_paths(client, signer, subscriber_id)
        response = client.get(atom_path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/atom+xml")
        entries = _check_atom(response.content)
        shown = {e.findtext(f"{A}id").rsplit("#", 1)[1] for e in entries}  # type: ignore[union-attr]
        assert shown == _carried(config, subscriber_id), address
        assert shown
        data = client.get(json_path).json()
        assert data["version"] == "https://jsonfeed.org/version/1.1"
        assert isinstance(data["title"], str)
        assert data["title"]
        for item in data["items"]:
            assert isinstance(item["id"], str)
            assert item.get("content_text") or item.get("content_html")
        assert {i["id"].rsplit("#", 1)[1] for i in data["items"]} == shown
    first, second = (_carried(config, i) for i in ids.values())
    assert first != second  # two readers, two selections


def test_the_feed_answers_304_to_a_current_copy(sent: tuple[Path, dict[str, int]]) -> None:
    config, ids = sent
    client, signer = _client(config)
    _, atom_path, _ = _feed_paths(client, signer, ids["ada@example.com"])
    first = client.get(atom_path)
    again = client.get(atom_path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_rotating_the_address_ends_the_old_one(sent: tuple[Path, dict[str, int]]) -> None:
    config, ids = sent
    client, signer = _client(config)
    manage, old_atom, old_json = _feed_paths(client, signer, ids["ada@example.com"])
    token = csrf_token(client.get(manage).text)
    page = client.post(manage, data={"csrf_token": token, "action": "rotate_feed"})
    assert page.status_code == 200
    assert "Your feed has a new address" in page.text
    assert client.get(old_atom).status_code == 404
    assert client.get(old_json).status_code == 404
    _, new_atom, _ = _feed_paths(client, signer, ids["ada@example.com"])
    assert new_atom != old_atom
    assert client.get(new_atom).status_code == 200
    assert client.get(new_atom.replace(".atom", "x.atom")).status_code == 404  # a guessed key


def test_an_unsubscribed_readers_feed_answers_410(sent: tuple[Path, dict[str, int]]) -> None:
    config, ids = sent
    client, signer = _client(config)
    _, atom_path, json_path = _feed_paths(client, signer, ids["bo@example.com"])
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    store.unsubscribe(ids["bo@example.com"], now=datetime.now(UTC))
    assert client.get(atom_path).status_code == 410
    assert client.get(json_path).status_code == 410
    assert client.get(_feed_paths(client, signer, ids["ada@example.com"])[1]).status_code == 200


def _footer_feed_paths(sink: MailSink) -> dict[str, str]:
    """Each delivered email's "Your feed" link (HTML part), checked against its text part's."""
    paths = {}
    for address, messages in sink.by_recipient().items():
        assert len(messages) == 1
        message = email.message_from_bytes(messages[0].data, policy=email.policy.default)
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = re.search(r'<a href="([^"]+)"[^>]*>Your feed</a>', html)
        assert link is not None, address
        assert f"Your private feed (Atom, for a feed reader):\r\n{link.group(1)}\r\n" in text
        paths[address] = urlsplit(link.group(1)).path
    return paths


def test_the_footer_link_of_a_delivered_email_opens_that_readers_feed(sent: tuple[Path, dict[str, int]],
                                                                       sink: MailSink) -> None:
    """The email carries a signed feed token made without a database read; rotating the address (the manage
    page's button) ends it with a 404, unsubscribing with a 410."""
    config, ids = sent
    client, signer = _client(config)
    paths = _footer_feed_paths(sink)
    assert set(paths) == set(ids)
    for address, subscriber_id in ids.items():
        response = client.get(paths[address])
        assert response.status_code == 200, address
        shown = {e.findtext(f"{A}id").rsplit("#", 1)[1] for e in _check_atom(response.content)}  # type: ignore[union-attr]
        assert shown == _carried(config, subscriber_id), address
        assert shown
        assert client.get(paths[address].replace(".atom", ".json")).status_code == 200
    ada = paths["ada@example.com"]
    forged = re.sub(r"\.(\d+)\.", f".{ids['bo@example.com']}.", ada, count=1)  # another reader's id, same signature
    assert forged != ada
    assert client.get(forged).status_code == 404
    manage, _, _ = _feed_paths(client, signer, ids["ada@example.com"])
    page = client.post(manage, data={"csrf_token": csrf_token(client.get(manage).text), "action": "rotate_feed"})
    assert "Your feed has a new address" in page.text
    assert client.get(ada).status_code == 404  # every token issued before the rotation
    assert client.get(paths["bo@example.com"]).status_code == 200  # another reader's is untouched
    store = SubscriberStore(open_database(load_settings(config).newsletter.database_url))
    store.unsubscribe(ids["bo@example.com"], now=datetime.now(UTC))
    assert client.get(paths["bo@example.com"]).status_code == 410
