"""Feedback that only counts where it should (issue 24): a vote needs an active reader, a topic they receive,
a paper their delivered email carried in that topic and a link of bounded age; one reader's votes re-rank
only their own next edition, and no single reader changes what another reader receives.

Everything goes through the real pipeline: fixture feeds fetched into SQLite, `send` to the aiosmtpd sink,
the links read from the received mail, the votes POSTed to the real web app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.editions.preferences import reader_boosts
from newsletter.records.editions import Edition, EditionEntry, EditionPaper, EditionTopic
from newsletter.records.papers import Paper
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.storage.variant_readers import variant_of
from newsletter.usecases.send import run_send
from newsletter.web.app import create_app
from subscribers.feedback import FeedbackStore
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.conftest import TOPICS_TOML, write_config
from tests.email_support import FIXTURE_SOURCES, NOW, POSTAL, fetch
from tests.mailsink import MailSink, ReceivedMessage
from tests.test_feedback import text_of
from tests.web_support import SECRET

VISION = '''
[[topics]]
slug = "vision"
name = "Computer vision"
description = "Image and video understanding: recognition, segmentation, detection and generation of images."
keywords = ["image", "video", "visual", "vision"]
'''
DAY1, DAY2 = NOW, NOW + timedelta(days=1)
EVERYTHING = ("agents", "reasoning", "medical")


@dataclass(frozen=True)
class Link:
    url: str
    paper: str
    topic: str
    vote: str

    @property
    def form(self) -> dict[str, str]:
        return {"paper": self.paper, "topic": self.topic, "vote": self.vote}

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def links_of(message: ReceivedMessage) -> list[Link]:
    """The "more" and "less" links of an email's papers, in the order shown (the text part has one link per
    paper, whose page offers both votes)."""
    found = []
    for url in re.findall(r"More or less like this:\s+(\S+)", text_of(message)):
        query = parse_qs(urlsplit(url).query)
        found += [Link(url, query["paper"][0], query["topic"][0], vote) for vote in ("more", "less")]
    return found


def order_of(message: ReceivedMessage) -> list[str]:
    return list(dict.fromkeys(link.paper for link in links_of(message)))


def mail_to(sink: MailSink, address: str, *, after: int = 0) -> ReceivedMessage:
    mine = [m for m in sink.messages[after:] if address in m.rcpt_tos]
    assert mine, f"no email to {address}"
    return mine[-1]


class World:
    """One server: a config with the fixture feeds (and a vision topic), a SQLite file, the web app."""

    def __init__(self, folder: Path, sink: MailSink, *, extra: str = "") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config = (f'[email]\npostal_address = "{POSTAL}"\nmax_papers_per_topic = 20\n'
                  f"[delivery]\nport = {sink.port}\ntimeout_seconds = 5\n{extra}")
        self.settings: Settings = load_settings(write_config(folder, FIXTURE_SOURCES, extra=config,
                                                             topics=TOPICS_TOML + VISION))
        self.engine: Engine = open_database(self.settings.newsletter.database_url)
        self.papers = PaperStore(self.engine)
        self.subscribers = SubscriberStore(self.engine)
        self.signer = TokenSigner(Keyring.parse(SECRET))
        self.sink = sink

    def reader(self, address: str, topics: tuple[str, ...]) -> int:
        return self.subscribers.add(address, name=address.split("@")[0], topics=topics, now=DAY1).id

    def send(self, day: datetime, *sources: str) -> int:
        """Fetch ``sources`` on ``day`` and send its daily edition; returns where its mail starts in the sink."""
        start = len(self.sink.messages)
        fetch(self.settings, self.papers, *sources, now=day)
        run_send(self.settings, self.engine, frequency="daily", day=day.date(), clock=lambda: day + timedelta(hours=1))
        return start

    def client(self, at: datetime) -> TestClient:
        return TestClient(create_app(self.settings, self.engine, signer=self.signer, clock=lambda: at),
                          base_url="https://papers.example.org")

    def token(self, subscriber_id: int) -> str:
        return self.signer.sign("feedback", subscriber_id)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def test_a_vote_counts_only_from_an_active_reader_on_a_paper_sent_to_them_in_a_topic_they_receive(
    tmp_path: Path, sink: MailSink
) -> None:
    world = World(tmp_path, sink)
    ada = world.reader("ada@example.org", EVERYTHING)
    vic = world.reader("vic@example.org", ("vision",))
    bo = world.reader("bo@example.org", EVERYTHING)
    una = world.reader("una@example.org", EVERYTHING)
    start = world.send(DAY1, "arxiv-cs-ai", "arxiv-cs-cl")
    ada_links = links_of(mail_to(sink, "ada@example.org", after=start))
    agents = [link for link in ada_links if link.topic == "agents" and link.vote == "more"]
    assert len(agents) >= 2
    edition = EditionStore(world.engine).editions()[0]
    not_medical = next(link for link in agents
                       if link.paper not in {e.paper_id for e in edition.topic_map["medical"].entries})
    fetch(world.settings, world.papers, "arxiv-cs-lg", now=DAY1 + timedelta(hours=2))  # stored, never sent
    never_sent = next(p.paper_id for p in world.papers.papers() if p.paper_id not in edition.papers)
    world.subscribers.mark_bounced(bo, now=DAY1 + timedelta(hours=2))
    world.subscribers.unsubscribe(una, now=DAY1 + timedelta(hours=2))
    soon = world.client(DAY1 + timedelta(hours=3))

    refused = [
        # a reader who does not receive the topic ("vision" only), on a paper of it
        (soon, world.token(vic), agents[0].form, 404, "You do not receive this topic"),
        # a topic they receive, but the paper was never sent to them
        (soon, world.token(vic), {**agents[0].form, "topic": "vision"}, 404, "not sent to you"),
        (soon, world.token(ada), {**agents[0].form, "paper": never_sent}, 404, "not sent to you"),
        # a paper sent to them, under another topic of theirs that the edition did not list it in
        (soon, world.token(ada), {**not_medical.form, "topic": "medical"}, 404, "not sent to you"),
        # readers who bounced or unsubscribed, with the links of their own emails
        (soon, world.token(bo), agents[0].form, 410, "not active"),
        (soon, world.token(una), agents[0].form, 410, "not active"),
        # the reader's own valid link, 61 days on (the default bound is 60 days)
        (world.client(DAY1 + timedelta(days=61)), world.token(ada), agents[0].form, 410, "expired"),
    ]
    for client, token, form, status, words in refused:
        page = client.get(f"/feedback/{token}", params=form)
        assert (page.status_code, words in page.text) == (status, True), (form, page.text[:300])
        done = client.post(f"/feedback/{token}", data=form)
        assert (done.status_code, words in done.text) == (status, True), (form, done.text[:300])
    assert FeedbackStore(world.engine).votes() == []  # none of them changed anything

    accepted = soon.post(agents[0].path, data=agents[0].form)  # the same link, in time, from its reader
    assert accepted.status_code == 200
    assert [(v.subscriber_id, v.paper_id, v.topic) for v in FeedbackStore(world.engine).votes()] == [
        (ada, agents[0].paper, "agents")]


def test_the_link_age_bound_is_configurable(tmp_path: Path, sink: MailSink) -> None:
    world = World(tmp_path, sink, extra="[feedback]\nlink_max_age_days = 2\n")
    world.reader("ada@example.org", EVERYTHING)
    start = world.send(DAY1, "arxiv-cs-ai")
    link = links_of(mail_to(sink, "ada@example.org", after=start))[0]
    assert world.client(DAY1 + timedelta(days=3)).post(link.path, data=link.form).status_code == 410
    assert world.client(DAY1 + timedelta(days=1)).post(link.path, data=link.form).status_code == 200


def test_one_readers_votes_re_rank_only_their_own_next_edition(tmp_path: Path, sink: MailSink) -> None:
    orders: dict[str, dict[str, list[str]]] = {}
    for name in ("control", "voted"):
        world = World(tmp_path / name, sink)
        ada, bob, cy = (world.reader(f"{n}@example.org", EVERYTHING) for n in ("ada", "bob", "cy"))
        start = world.send(DAY1, "arxiv-cs-ai", "arxiv-cs-cl")
        links = links_of(mail_to(sink, "ada@example.org", after=start))
        more = [link for link in links if link.vote == "more"]
        less = [link for link in links if link.vote == "less"]
        chosen = [(ada, more[0]), (ada, more[1]), (ada, less[-1]), (ada, less[-2])] if name == "voted" else []
        client = world.client(DAY1 + timedelta(hours=3))
        for reader, link in chosen:
            assert client.post(f"/feedback/{world.token(reader)}", data=link.form).status_code == 200
        start = world.send(DAY2, "arxiv-cs-lg", "hf-daily")
        orders[name] = {n: order_of(mail_to(sink, f"{n}@example.org", after=start)) for n in ("ada", "bob", "cy")}
        edition = EditionStore(world.engine).editions()[0]
        assert edition.date == DAY2.date()
        mine = {e.paper_id for slug in EVERYTHING if slug in edition.topic_map
                for e in edition.topic_map[slug].entries}
        assert set(orders[name]["ada"]) <= mine  # her sections hold her topics' papers only
        if name == "voted":  # readers without votes share a rendered variant; Ada has her own
            assert variant_of(world.engine, edition.id, bob) == variant_of(world.engine, edition.id, cy)
            assert variant_of(world.engine, edition.id, ada) != variant_of(world.engine, edition.id, bob)
    assert orders["voted"]["ada"] != orders["control"]["ada"]  # her votes re-ranked her next edition
    assert orders["voted"]["bob"] == orders["control"]["bob"]  # and nobody else's
    assert orders["voted"]["cy"] == orders["control"]["cy"]


def test_a_vision_reader_cannot_move_papers_in_anothers_agents_section(tmp_path: Path, sink: MailSink) -> None:
    """The issue's attack: a reader who only receives "vision" POSTs four votes on the agents topic."""
    orders: dict[str, list[str]] = {}
    for name in ("control", "attacked"):
        world = World(tmp_path / name, sink)
        world.reader("ada@example.org", ("agents",))
        vic = world.reader("vic@example.org", ("vision",))
        start = world.send(DAY1, "arxiv-cs-ai", "arxiv-cs-cl")
        ada_links = [link for link in links_of(mail_to(sink, "ada@example.org", after=start))
                     if link.topic == "agents"]
        vision = [p.paper_id for p in world.papers.papers() if p.paper_id not in {x.paper for x in ada_links}]
        if name == "attacked":
            client = world.client(DAY1 + timedelta(hours=3))
            out = [link for link in ada_links if link.vote == "less"][:2]
            into = [Link("", paper, "agents", "more") for paper in vision[:2]]
            for link in [*out, *into]:
                answer = client.post(f"/feedback/{world.token(vic)}", data=link.form)
                assert answer.status_code == 404
            assert FeedbackStore(world.engine).votes() == []
            # even votes stored without the web's checks (say, kept from before them) stay Vic's own
            for link in [*out, *into]:
                FeedbackStore(world.engine).record(vic, paper_id=link.paper, topic="agents", vote=link.vote,
                                                   now=DAY1 + timedelta(hours=3))
        start = world.send(DAY2, "arxiv-cs-lg", "hf-daily")
        orders[name] = order_of(mail_to(sink, "ada@example.org", after=start))
    assert orders["attacked"] == orders["control"]


def test_a_topics_shared_definition_changes_only_when_enough_of_its_active_readers_agree(
    tmp_path: Path, sink: MailSink
) -> None:
    world = World(tmp_path, sink)
    readers = [world.reader(f"r{i}@example.org", ("agents",)) for i in range(4)]
    outsider = world.reader("vic@example.org", ("vision",))
    store = FeedbackStore(world.engine)
    at = DAY1 + timedelta(hours=3)
    for reader in [*readers[:2], outsider]:
        store.record(reader, paper_id="2604.00001", topic="agents", vote="less", now=at)
    assert store.topic_votes(min_readers=3) == {}  # two readers of the topic (and one who does not read it)
    store.record(readers[2], paper_id="2604.00001", topic="agents", vote="less", now=at)
    assert store.topic_votes(min_readers=3) == {"agents": ([], ["2604.00001"])}
    store.record(readers[3], paper_id="2604.00001", topic="agents", vote="more", now=at)
    assert store.topic_votes(min_readers=3) == {}  # 3 against 1: agreement is net
    world.subscribers.unsubscribe(readers[3], now=at)
    assert store.topic_votes(min_readers=3) == {"agents": ([], ["2604.00001"])}  # a leaver's vote stops counting
    world.subscribers.mark_bounced(readers[0], now=at)
    assert store.topic_votes(min_readers=3) == {}


def _edition(texts: dict[str, str]) -> Edition:
    entries = tuple(EditionEntry(paper_id=pid, strength=0.5, rank=2.0 + i / 10) for i, pid in enumerate(texts))
    return Edition(id=1, frequency="daily", date=DAY1.date(), slug="daily-test", window_start=DAY1, cutoff=DAY1,
                   created=DAY1, papers={p: EditionPaper(paper_id=p, title=t, abstract=t) for p, t in texts.items()},
                   topics=(EditionTopic(slug="agents", name="Agents", entries=entries),
                           EditionTopic(slug="medical", name="Medical", entries=entries[:1])))


def test_a_readers_model_learns_from_more_and_from_less_and_stays_in_their_topics() -> None:
    texts = {"a1": "tool-using language model agents plan web navigation tasks",
             "a2": "language model agents call tools to plan web tasks",
             "r1": "reinforcement learning of robot grasping policies in simulation",
             "r2": "robot grasping policies learned by reinforcement learning",
             "m1": "segmentation of tumours in brain MRI scans"}
    edition = _edition(texts)
    voted = {"v1": Paper(paper_id="v1", title="Web agents that plan and call tools with a language model",
                         abstract="Language model agents plan web navigation and call tools.")}
    assert reader_boosts(edition, {}, voted, {7: ["agents"]}) == {}  # cold start: the shared order stands
    more = reader_boosts(edition, {7: {"v1": 1}}, voted, {7: ["agents"]})[7]
    assert min(more["a1"], more["a2"]) > max(more["r1"], more["r2"])
    less = reader_boosts(edition, {7: {"v1": -1}}, voted, {7: ["agents"]})[7]
    assert max(less["a1"], less["a2"]) < min(less["r1"], less["r2"])  # only "less": the mirror model
    only_medical = reader_boosts(edition, {7: {"v1": 1}}, voted, {7: ["medical"]})
    assert set(only_medical.get(7, {})) <= {"a1"}  # never a paper of a topic the reader does not receive
