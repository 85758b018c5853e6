"""Relevance in the open world (issue 24): papers about none of the topics match nothing, sections are ranked
relevance first, and a very trending off-topic paper reaches no reader whose topics do not claim it."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import MatchingSettings, Settings, TopicSettings, load_settings
from newsletter.editions.build import compose
from newsletter.editions.selection import select
from newsletter.matching.background import (
    absorbed,
    area_topics,
    arxiv_areas,
    facet_digest,
    shipped_area_vectors,
    topic_area_similarity,
)
from newsletter.matching.embeddings import EmbeddingMatcher, topic_facets
from newsletter.matching.evaluate import LabelledPaper, evaluate
from newsletter.matching.matcher import build_matcher
from newsletter.records.editions import Edition
from newsletter.records.papers import Paper, TopicMatch
from newsletter.rendering.context import email_context, top_papers
from newsletter.storage.db import open_database
from subscribers.store import SubscriberStore
from tests.conftest import ROOT
from tests.mailsink import MailSink
from tests.topic_support import ARCHIVE_TOPICS, labelled_larger_sample, minilm  # noqa: F401 (a fixture)

OFF_TOPIC_TITLE = "Tidal disruption flares from a spinning supermassive black hole in a dwarf galaxy"
OFF_TOPIC_ABSTRACT = (
    "We report X-ray and optical observations of a luminous flare from the nucleus of a nearby dwarf galaxy, "
    "consistent with the tidal disruption of a main-sequence star by a spinning supermassive black hole. The "
    "light curve decays as a power law of index -5/3 over 400 days, and the spectra show broad hydrogen and "
    "helium emission lines. Relativistic accretion disc models constrain the black hole mass to about a "
    "million solar masses. The event rate implied by our survey of galaxies at redshift below 0.1 agrees with "
    "predictions for nuclear star clusters."
)


def test_the_taxonomy_ships_with_the_package() -> None:
    codes = {area.code for area in arxiv_areas()}
    assert len(codes) >= 150
    assert {"cs.CV", "cs.CL", "cs.RO", "astro-ph.HE", "math.NT", "q-bio.GN", "econ.TH", "eess.AS"} <= codes
    assert all(area.name and len(area.description) > 20 for area in arxiv_areas())


def test_a_topic_absorbs_its_own_area_and_no_foreign_one() -> None:
    topics = [TopicSettings(slug="vision", name="Computer vision",
                            description="Object detection, segmentation and image understanding."),
              TopicSettings(slug="stars", name="Stars", description="Stellar structure and evolution of stars.")]
    own = absorbed(topic_area_similarity(topics, build_matcher(MatchingSettings())))
    codes = [area.code for area in arxiv_areas()]
    vision = {codes[i] for i in own[0].nonzero()[0]}
    assert "cs.CV" in vision
    assert "astro-ph.SR" not in vision
    assert "cs.CL" not in vision
    assert "astro-ph.SR" in {codes[i] for i in own[1].nonzero()[0]}


class FakeMiniLM:
    """Named like the bundled model, deterministic vectors, records what it is asked to embed."""

    name = "all-MiniLM-L6-v2@128"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += list(texts)
        vectors = np.random.default_rng(len(self.texts)).normal(size=(len(texts), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_new_process_embeds_no_background_facet() -> None:
    """The ~1,200 area facets ship as vectors: matching embeds only the papers and the topics (was ~25 CPU-s)."""
    encoder = FakeMiniLM()
    rule = build_matcher(MatchingSettings(method="tfidf")).rule
    matcher = EmbeddingMatcher(threshold=0.3, encoder=encoder, rule=rule)
    paper = Paper(paper_id="2612.00001", title=OFF_TOPIC_TITLE, abstract=OFF_TOPIC_ABSTRACT)
    topic = TopicSettings(slug="robots", name="Robotics", description="Robot manipulation, grasping and control.")
    matcher.match([paper], [topic])
    areas = {text for area in area_topics() for text in topic_facets(area)}
    assert encoder.texts
    assert not areas & set(encoder.texts)


@pytest.mark.slow
def test_the_shipped_area_vectors_are_the_models(minilm: Any) -> None:  # noqa: F811
    shipped = shipped_area_vectors()
    texts = list(dict.fromkeys(text for area in area_topics() for text in topic_facets(area)))
    assert {facet_digest(t) for t in texts} <= set(shipped)  # else: python scripts/build_area_vectors.py
    vectors = minilm.encode(texts)
    cosines = [float(v @ shipped[facet_digest(t)]) for t, v in zip(texts, vectors, strict=True)]
    assert min(cosines) > 0.995


def _open_world(topics: list[TopicSettings], background: str) -> tuple[int, int, float]:
    """(off-topic papers matched, off-topic papers, macro-F1) on the fixtures' arXiv papers with ``topics``."""
    slugs = {t.slug for t in topics}
    labelled = [LabelledPaper(paper=item.paper, label=item.label if item.label in slugs else None)
                for item in labelled_larger_sample()]
    matcher = build_matcher(MatchingSettings(background=background))  # type: ignore[arg-type]
    result = evaluate(labelled, topics, matcher, background=[item.paper for item in labelled])[0]
    return result.unlabelled_matched, result.unlabelled, result.macro_f1 or 0.0


@pytest.mark.parametrize("slug", ["quant-ph", "astro-ph"])
def test_with_one_topic_most_papers_about_something_else_stay_unmatched(slug: str) -> None:
    """Without the background (the old rule) a quantum-physics topic took all 85 off-topic papers."""
    topic = next(t for t in ARCHIVE_TOPICS if t.slug == slug)
    matched, off_topic, _ = _open_world([topic], "arxiv")
    assert off_topic > 70
    assert matched <= 0.15 * off_topic
    if slug == "quant-ph":
        assert _open_world([topic], "none")[0] == off_topic  # "none of these" did not exist


def test_a_paper_about_none_of_the_topics_matches_nothing_whatever_the_number_of_topics() -> None:
    paper = Paper(paper_id="2612.00001", title=OFF_TOPIC_TITLE, abstract=OFF_TOPIC_ABSTRACT)
    on_topic = Paper(paper_id="2612.00002", title="Grasp planning for a two-finger robot hand",
                     abstract="We learn grasp poses for a robot arm from depth images and execute them on a real "
                              "manipulator, improving pick success on cluttered tables.")
    areas = [a for a in arxiv_areas() if a.code.startswith(("cs.", "econ.", "q-fin.")) and a.code != "cs.RO"][:29]
    many = [TopicSettings(slug=f"t{i}", name=a.name, description=a.description) for i, a in enumerate(areas)]
    robots = TopicSettings(slug="robots", name="Robotics", description="Robot manipulation, grasping and control.")
    for topics in ([robots], [robots, *many[:3]], [*many[:29], robots]):
        matches = build_matcher(MatchingSettings()).match([paper, on_topic], topics)
        assert {m.paper_id for m in matches} == {"2612.00002"}, [t.slug for t in topics]
        assert [m.topic for m in matches] == ["robots"]


# --- relevance first, trending second -------------------------------------------------------------------


def _paper(paper_id: str, upvotes: int, now: datetime) -> Paper:
    return Paper(paper_id=paper_id, title=f"Paper {paper_id}", abstract="Text.", upvotes=upvotes,
                 published=now - timedelta(hours=6), first_seen=now - timedelta(hours=1))


def _edition(settings: Settings, now: datetime) -> Edition:
    """Topic "agents": two strong matches barely trending, one weak match with 3,000 upvotes."""
    papers = [_paper("strong-1", 1, now), _paper("strong-2", 0, now), _paper("weak-hot", 3000, now),
              _paper("other", 2, now)]
    matches = [TopicMatch(paper_id="strong-1", topic="agents", strength=0.61, similarity=0.61),
               TopicMatch(paper_id="strong-2", topic="agents", strength=0.58, similarity=0.58),
               TopicMatch(paper_id="weak-hot", topic="agents", strength=0.16, similarity=0.16),
               TopicMatch(paper_id="other", topic="retrieval", strength=0.5, similarity=0.5)]
    snapshot, topics = compose(papers, matches, settings.topics, settings=settings, cutoff=now)
    return Edition(id=1, frequency="daily", date=now.date(), slug="daily-x", window_start=now - timedelta(days=1),
                   cutoff=now, created=now, papers=snapshot, topics=topics)


@pytest.fixture
def settings(offline_settings: Settings) -> Settings:
    return offline_settings


def test_trending_cannot_lift_a_weak_match_over_strong_ones(settings: Settings) -> None:
    now = datetime(2026, 6, 12, 12, tzinfo=UTC)
    edition = _edition(settings, now)
    assert edition.papers["weak-hot"].score > edition.papers["strong-1"].score + 3  # by far the most trending
    agents = edition.topic_map["agents"]
    assert [e.paper_id for e in agents.entries] == ["strong-1", "strong-2", "weak-hot"]


def test_the_top_block_and_preheader_lead_with_a_relevant_paper(settings: Settings) -> None:
    now = datetime(2026, 6, 12, 12, tzinfo=UTC)
    selection = select(_edition(settings, now), ["agents", "retrieval"], max_per_topic=5)
    context = email_context(selection, settings=settings, subject="s", nonce="n", abstract_chars=100)
    assert context["preheader"].startswith("Top paper: Paper other (2 upvotes)")  # not "Paper weak-hot"
    assert top_papers([p for s in selection.sections for p in s.papers], 4)[-1].paper.paper_id == "weak-hot"


# --- the whole way: fetch, match, build, send, read the received mail ------------------------------------


def _hf_feed(path: Path, now: datetime) -> Path:
    """The shipped Hugging Face fixture, plus one astrophysics paper with 5,000 upvotes published today."""
    items = json.loads((ROOT / "examples" / "feeds" / "sotawhat_hf_daily_papers_2026-06-12.json").read_text())
    hot = json.loads(json.dumps(items[0]))
    hot["paper"].update(id="2612.09999", title=OFF_TOPIC_TITLE, summary=OFF_TOPIC_ABSTRACT, upvotes=5000,
                        ai_summary=None, ai_keywords=[], publishedAt=now.strftime("%Y-%m-%dT00:00:00.000Z"))
    hot.update(title=OFF_TOPIC_TITLE, summary=OFF_TOPIC_ABSTRACT, publishedAt=hot["paper"]["publishedAt"])
    path.write_text(json.dumps([hot, *items]), encoding="utf-8")
    return path


def test_a_very_trending_off_topic_paper_reaches_no_reader(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", "k1:relevance-secret-0123456789")
    feed = _hf_feed(tmp_path / "hf.json", datetime.now(UTC))
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    text += f'\n[[sources]]\nname = "hf"\nkind = "hf-daily"\nurl = "{feed}"\n'
    config = tmp_path / "config.toml"
    config.write_text(text + f"\n[delivery]\nport = {sink.port}\ntimeout_seconds = 5\n", encoding="utf-8")

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("fetch")
    settings = load_settings(config)
    store = SubscriberStore(open_database(settings.newsletter.database_url))
    readers = {"a@example.com": ("agents",), "b@example.com": ("retrieval", "reasoning"),
               "c@example.com": tuple(t.slug for t in settings.topics)}
    for address, topics in readers.items():
        store.add(address, name="Reader", topics=topics, now=datetime.now(UTC))
    assert "2612.09999" in run("papers", "--unmatched", "--json")
    run("send")
    received = {m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=email.policy.default) for m in sink.messages}
    assert set(received) == set(readers)
    for message in received.values():
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Tidal disruption" not in str(message["Subject"])
        assert "Tidal disruption" not in html
        assert "Tidal disruption" not in plain


def test_topics_papers_status_and_suggest_show_the_papers_that_match_no_topic(tmp_path: Path) -> None:
    """At the defaults (calibrated rule with the arXiv background), the unmatched are counted everywhere."""
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    config = tmp_path / "offline.toml"
    config.write_text(text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/'), encoding="utf-8")

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("fetch")
    listed = json.loads(run("papers", "--unmatched", "--json"))["papers"]
    count = len(listed)
    topics = json.loads(run("topics", "--json"))
    assert 0 < count < topics["papers"]
    assert topics["unmatched"]["count"] == count
    assert f"{count} of {topics['papers']} papers match no topic" in " ".join(run("topics").split())
    assert json.loads(run("status", "--json"))["unmatched_papers"] == count
    assert f"papers: {topics['papers']} stored, {count} match no topic" in " ".join(run("status").split())
    suggested = run("topics", "suggest", "--since", "2000-01-01", "--clusters", "2", "--min-size", "2")
    assert suggested.startswith(f"# {count} papers first seen since 2000-01-01 match no topic; ")
