"""Topic matching and the trending score: every decision comes with its reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.config import TopicSettings, TrendingSettings
from newsletter.matching.rules import KeywordIndex, match_papers
from newsletter.matching.trending import trending_score
from newsletter.records.papers import Paper
from newsletter.sources.parsing import parse_feed
from tests.conftest import fixture_path

AGENTS = TopicSettings(
    slug="agents",
    name="LLM agents",
    description="Autonomous agents built on large language models that plan, call tools and act.",
    keywords=("agent", "tool use"),
    categories=("cs.MA",),
)
MEDICAL = TopicSettings(
    slug="medical",
    name="Medical imaging",
    description="Medical image analysis of CT and MRI scans in clinical settings.",
    keywords=("medical imaging", "clinical"),
    exclude_keywords=("drug",),
)
RAG = TopicSettings(slug="rag", name="RAG", keywords=("RAG",))


def cs_ai_papers() -> tuple[Paper, ...]:
    return parse_feed("arxiv-rss", fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml").read_bytes(),
                      source="cs.AI").papers


def test_matches_carry_their_reasons() -> None:
    matches = {(m.paper_id, m.topic): m for m in match_papers(cs_ai_papers(), [AGENTS, MEDICAL], threshold=0.12)}
    molclaw = matches[("2604.21937", "agents")]  # listed in cs.MA, "agent" in the title
    assert molclaw.categories == ("cs.MA",)
    assert molclaw.keywords == ("agent",)
    assert molclaw.reasons[-1] == "listed in cs.MA"
    assert molclaw.reasons[-2].startswith("mentions ‘agent’")
    assert molclaw.reasons[0].startswith("closest to ‘")
    assert not any(ch.isdigit() for r in molclaw.reasons[:-1] for ch in r)  # words, never a bare score
    assert molclaw.strength == pytest.approx(molclaw.similarity + 0.2 + 0.15, abs=1e-3)
    medical = matches[("2604.21936", "medical")]
    assert medical.keywords == ("medical imaging", "clinical")
    assert ("2604.21936", "agents") in matches  # "agent framework": one paper, several topics


def test_excluded_keywords_keep_a_paper_out() -> None:
    matches = match_papers(cs_ai_papers(), [MEDICAL], threshold=0.0)
    assert "2604.21937" not in {m.paper_id for m in matches}  # MolClaw is about drug molecules


def test_keywords_match_whole_words_plurals_and_hyphenation() -> None:
    index = KeywordIndex(["RAG", "tool use", "agent", "multi-agent"])
    assert index.find("Fragments of a drag race") == frozenset()
    assert index.find("Two RAGs and agents") == {"rag", "agent"}
    assert index.find("better tool-use in multi agent systems") == {"tool use", "agent", "multi-agent"}
    assert index.find("Agentic systems") == frozenset()


def test_similarity_alone_can_match_and_the_threshold_decides() -> None:
    paper = Paper(paper_id="x", title="Medical image segmentation of MRI scans",
                  abstract="We segment MRI and CT scans for image analysis.")
    other = Paper(paper_id="y", title="Sorting networks", abstract="We sort numbers on hardware quickly.")
    loose = match_papers([paper, other], [MEDICAL], threshold=0.05)
    assert [m.paper_id for m in loose] == ["x"]
    assert loose[0].keywords == ()
    assert loose[0].similarity > 0.05
    assert match_papers([paper, other], [MEDICAL], threshold=0.99) == []


def test_unrelated_papers_match_nothing() -> None:
    astro = parse_feed("arxiv-api", fixture_path("arxiv_api/arxivpy_2026_id_astro-ph_0601001.xml").read_bytes(),
                       source="api").papers
    assert match_papers(astro, [AGENTS, MEDICAL, RAG], threshold=0.12) == []


NOW = datetime(2026, 6, 12, tzinfo=UTC)


def test_trending_score_is_explained_in_words() -> None:
    paper = Paper(paper_id="p", title="t", upvotes=12, github_stars=340, sources=("arxiv", "hf"),
                  published=NOW - timedelta(days=1, hours=12))
    score = trending_score(paper, now=NOW, settings=TrendingSettings())
    assert score.value == pytest.approx((1 + 2.5649 + 0.5 * 5.8319 + 0.5) * 0.5 ** 0.5, rel=1e-3)
    assert score.explain() == (
        "base 1.00 + 12 upvotes (+2.56) + 340 GitHub stars (+2.92) + carried by 2 sources (+0.50) = 6.98, "
        "× 0.71 for 1.5 days of age = 4.94"
    )


def test_older_and_quieter_papers_score_lower() -> None:
    settings = TrendingSettings()
    fresh = Paper(paper_id="a", title="t", upvotes=5, published=NOW)
    old = Paper(paper_id="b", title="t", upvotes=5, published=NOW - timedelta(days=6))
    quiet = Paper(paper_id="c", title="t", published=NOW)
    assert trending_score(fresh, now=NOW, settings=settings).value > trending_score(old, now=NOW,
                                                                                    settings=settings).value
    assert trending_score(fresh, now=NOW, settings=settings).value > trending_score(quiet, now=NOW,
                                                                                    settings=settings).value
    assert trending_score(quiet, now=NOW, settings=settings).explain() == (
        "base 1.00 = 1.00, × 1.00 for 0.0 days of age = 1.00"
    )
