"""Reader feedback end to end: a "more like this" link from a real email, confirmed in the real web app,
changes that reader's next edition (and nobody else's); votes are stored, exported and erased with the reader."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from newsletter.storage.db import open_database
from newsletter.storage.papers import PaperStore
from newsletter.usecases.send import run_send
from newsletter.web.app import create_app
from subscribers.feedback import FeedbackStore
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.email_support import NOW, fetch
from tests.mailsink import MailSink, ReceivedMessage
from tests.web_support import SECRET, web_settings

TOPICS = ("reasoning", "agents", "medical")


def text_of(message: ReceivedMessage) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    part = parsed.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert part is not None
    return str(part.get_content())


def paper_order(message: ReceivedMessage) -> list[str]:
    """The papers of an email in the order shown, by the ids in their feedback links."""
    return list(dict.fromkeys(re.findall(r"More or less like this:\s+\S+\?paper=([^&\s]+)&", text_of(message))))


def latest_for(sink: MailSink, address: str) -> ReceivedMessage:
    return [m for m in sink.messages if address in m.rcpt_tos][-1]


def test_a_more_like_this_click_reorders_that_readers_next_edition(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    settings = web_settings(tmp_path, sink)
    settings = dataclasses.replace(settings, email=dataclasses.replace(settings.email, max_papers_per_topic=20))
    engine = open_database(settings.newsletter.database_url)
    store, subscribers = PaperStore(engine), SubscriberStore(engine)
    ada = subscribers.add("ada@example.org", name="Ada", topics=TOPICS, now=NOW)
    subscribers.add("bob@example.org", name="Bob", topics=TOPICS, now=NOW)
    day1, day2 = NOW, NOW + timedelta(days=1)

    fetch(settings, store, "arxiv-cs-ai", "arxiv-cs-cl", now=day1)
    run_send(settings, engine, frequency="daily", day=day1.date(), clock=lambda: day1 + timedelta(hours=1))
    first = text_of(latest_for(sink, "ada@example.org"))
    links = re.findall(r"More or less like this:\s+(\S+)", first)
    assert links, "no feedback links in the email"
    link = links[0]
    voted = parse_qs(urlsplit(link).query)["paper"][0]

    signer = TokenSigner(Keyring.parse(SECRET))
    client = TestClient(create_app(settings, engine, signer=signer, clock=lambda: day1 + timedelta(hours=2)),
                        base_url="https://papers.example.org")
    page = client.get(link)
    assert page.status_code == 200
    assert "More or less like this?" in page.text  # the text part's one link: both buttons
    assert page.text.count('<button type="submit">') == 2
    assert FeedbackStore(engine).votes() == []  # a GET (a link scanner, a preview) records nothing
    query = parse_qs(urlsplit(link).query)
    done = client.post(urlsplit(link).path, data={**{k: v[0] for k, v in query.items()}, "vote": "more"})
    assert done.status_code == 200
    assert "Thank you" in done.text
    [vote] = FeedbackStore(engine).votes()
    assert (vote.subscriber_id, vote.paper_id, vote.vote) == (ada.id, voted, 1)

    fetch(settings, store, "arxiv-cs-lg", "hf-daily", now=day2)
    run_send(settings, engine, frequency="daily", day=day2.date(), clock=lambda: day2 + timedelta(hours=1))
    ada_order = paper_order(latest_for(sink, "ada@example.org"))
    bob_order = paper_order(latest_for(sink, "bob@example.org"))
    assert ada_order
    assert bob_order
    assert ada_order != bob_order  # same topics, but Ada's click reordered hers; Bob keeps the shared ranking
    assert voted not in ada_order  # the next edition holds new papers only


def test_a_bad_feedback_link_is_a_404_page_and_votes_go_with_the_reader(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    settings = web_settings(tmp_path, sink)
    engine = open_database(settings.newsletter.database_url)
    store, subscribers = PaperStore(engine), SubscriberStore(engine)
    ada = subscribers.add("ada@example.org", name="Ada", topics=TOPICS, now=NOW)
    fetch(settings, store, "arxiv-cs-ai", now=NOW)
    run_send(settings, engine, frequency="daily", day=NOW.date(), clock=lambda: NOW + timedelta(hours=1))
    link = re.findall(r"More or less like this:\s+(\S+)", text_of(latest_for(sink, "ada@example.org")))[0]
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    paper, topic = query["paper"], query["topic"]
    signer = TokenSigner(Keyring.parse(SECRET))
    client = TestClient(create_app(settings, engine, signer=signer, clock=lambda: NOW + timedelta(hours=2)),
                        base_url="https://papers.example.org")
    token = signer.sign("feedback", ada.id)
    assert client.get(f"/feedback/{token}?paper=nope&topic={topic}&vote=more").status_code == 404
    assert client.get(f"/feedback/{token}?paper={paper}&topic=nope&vote=more").status_code == 404
    manage = signer.sign("manage", ada.id)  # a token for another purpose opens nothing here
    assert client.get(f"/feedback/{manage}?paper={paper}&topic={topic}&vote=more").status_code == 404
    assert client.get(f"/feedback/{token}?paper={paper}&topic={topic}&vote=maybe").status_code == 404
    no_vote = {"paper": paper, "topic": topic}  # the text part's link names no vote: its page asks
    assert client.post(f"/feedback/{token}", data=no_vote).status_code == 404
    assert FeedbackStore(engine).votes() == []
    form = {**no_vote, "vote": "less"}
    assert client.post(f"/feedback/{token}", data=form).status_code == 200
    assert [(v.paper_id, v.vote) for v in FeedbackStore(engine).votes(subscriber_id=ada.id)] == [(paper, -1)]
    assert FeedbackStore(engine).topic_votes(min_readers=1) == {topic: ([], [paper])}
    subscribers.delete_personal_data(ada.id, now=NOW)
    assert FeedbackStore(engine).votes() == []  # erased with the reader


def test_subscribers_show_exports_a_readers_feedback(tmp_path: Path, sink: MailSink,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from newsletter.cli.main import cli

    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    settings = web_settings(tmp_path, sink)
    engine = open_database(settings.newsletter.database_url)
    ada = SubscriberStore(engine).add("ada@example.org", name="Ada", topics=TOPICS, now=NOW)
    FeedbackStore(engine).record(ada.id, paper_id="2604.21935", topic="agents", vote="more", now=NOW)
    result = CliRunner().invoke(cli, ["--config", str(settings.config_path), "subscribers", "show",
                                      "ada@example.org", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["feedback"] == [
        {"paper": "2604.21935", "topic": "agents", "vote": "more", "at": NOW.isoformat()}]
