"""Reasons in words for every kind of match, and no bare similarity number in an email or a web page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from newsletter.config import TopicSettings
from newsletter.editions.build import build_edition
from newsletter.editions.selection import select
from newsletter.matching.calibration import DecisionRule
from newsletter.matching.matcher import TfidfMatcher
from newsletter.matching.scoring import decide_matches
from newsletter.records.papers import TopicMatch
from newsletter.rendering.render import render_variant
from newsletter.rendering.templating import RenderEnvironment
from newsletter.web.app import create_app
from subscribers.tokens import Keyring, TokenSigner
from tests.email_support import NOW, SECRET, email_settings, fetch, fix_tokens, stores
from tests.test_render import recipient_for
from tests.test_topics import cs_ai_papers

SCORE = re.compile(r"\d\.\d")


def test_every_kind_of_match_is_explained_in_words() -> None:
    papers = list(cs_ai_papers())
    topics = [
        TopicSettings(slug="agents", name="LLM agents", description="Autonomous agents built on language models, "
                      "tool use and planning.", keywords=("agent",)),  # keyword + phrase
        TopicSettings(slug="multi", name="Multi-agent systems", categories=("cs.MA",)),  # category + name
        TopicSettings(slug="chem", name="Chemistry", description="Molecules, drugs and reactions."),
    ]
    matcher = TfidfMatcher(threshold=0.12, rule=DecisionRule(floor=0.0, margin=1.0))
    examples = {"chem": ([papers[1]], [])}  # MolClaw, by example
    scored = matcher.score(papers, topics, background=papers, examples=examples)
    matches = decide_matches(matcher.rule, papers, topics, scored)
    kinds = {m.closest_kind for m in matches}
    assert {"phrase", "example"} <= kinds
    reasons = [r for m in matches for r in m.reasons]
    assert any(r.startswith("closest to ‘") for r in reasons)
    assert any(r.startswith("like the example paper ‘") for r in reasons)
    assert any(r.startswith("mentions ‘agent’") for r in reasons)
    assert "listed in cs.MA" in reasons
    assert not [r for r in reasons if SCORE.search(r) and not r.startswith("listed in")]
    by_hand = [  # the kinds the matchers above cannot all produce from three papers
        TopicMatch(paper_id="p", topic="t", strength=0.5, similarity=0.41, closest="Reasoning", closest_kind="name"),
        TopicMatch(paper_id="p", topic="t", strength=0.5, similarity=0.41, closest="A liked paper",
                   closest_kind="feedback"),
        TopicMatch(paper_id="p", topic="t", strength=0.5, similarity=0.41, closest="tool use",
                   closest_kind="keyword", terms=("planning",)),
        TopicMatch(paper_id="p", topic="t", strength=0.5, similarity=0.41),
    ]
    assert [m.reasons for m in by_hand] == [
        ("closest to ‘Reasoning’",),
        ("like ‘A liked paper’, which readers asked for more of",),
        ("closest to ‘tool use’", "mentions ‘planning’"),
        ("close to the topic as a whole",),
    ]


def test_no_email_or_web_page_shows_a_similarity_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    settings = email_settings(tmp_path, email="full_cards_per_section = 10")  # every paper a card with its reason
    store, editions = stores(settings)
    fetch(settings, store)
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW)
    editions.publish(edition)  # as its send does: public once it is being sent
    selection = select(edition, [t.slug for t in settings.topics], max_per_topic=10)
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings))
    html, text = variant.personalise(recipient_for(settings, edition))
    whys = re.findall(r"Why you got this: ([^<]*)", html) + re.findall(r"Why you got this: (.*)", text)
    assert len(whys) >= 2 * selection.paper_count // 2
    assert [w for w in whys if SCORE.search(w)] == []
    editions.publish(edition)  # as its send does: an edition is public once it is being sent
    client = TestClient(create_app(settings, store.engine, signer=TokenSigner(Keyring.parse(SECRET)),
                                   clock=lambda: NOW), base_url="https://papers.example.org")
    page = client.get(f"/archive/{edition.slug}")
    assert page.status_code == 200
    web_whys = re.findall(r"Why you got this: ([^<]*)", page.text)
    assert web_whys
    assert [w for w in web_whys if SCORE.search(w)] == []
    feed = client.get(f"/topics/{settings.topics[0].slug}.atom")
    assert [w for w in re.findall(r"\(Why: ([^)]*)\)", feed.text) if SCORE.search(w)] == []


def test_a_reason_is_the_topic_and_at_most_two_telling_terms() -> None:
    from newsletter.rendering.reasons import reason_terms

    assert reason_terms("LLM agents", ["closest to ‘and models that combine vision’; mentions ‘models’, ‘large’, "
                                       "‘llm’"]) == "LLM agents"
    assert reason_terms("LLM agents", ["closest to ‘browse and act in multi-step workflows’; mentions ‘agent’, "
                                       "‘multi-step’, ‘tools’"]) == "LLM agents: multi-step, tools"
    assert reason_terms("Efficient training", ["closest to ‘memory or data’; mentions ‘memory-efficient’, "
                                               "‘training’, ‘memory’"]) == "Efficient training: memory-efficient"
    assert reason_terms("Reasoning", ["closest to ‘chain of thought’; mentions ‘reasoning’"]) == \
        "Reasoning: chain of thought"
    assert reason_terms("Vision", ["listed in cs.CV", "similar to the topic description: 0.04"]) == \
        "Vision: listed in cs.CV"
    # a phrase longer than a term (here 65 characters) is not shown in the matcher's words either
    assert reason_terms("Retrieval and RAG", ["closest to ‘embeddings and retrieval-augmented generation for "
                                              "language models’"]) == "Retrieval and RAG"


def test_the_email_gives_reasons_in_human_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.design_support import offline_edition, offline_settings_in, personalised, render, topic_selection

    fix_tokens(monkeypatch)
    settings = offline_settings_in(tmp_path, max_papers_per_topic=10, full_cards_per_section=10)  # all full cards
    edition = offline_edition(settings)
    selection = topic_selection(settings, edition, 6)
    html_part, text_part = personalised(settings, edition, render(settings, selection))
    reasons = re.findall(r"Why you got this: ([^<]*?)(?:\. Also in: [^<]*)?</p>", html_part)
    assert len(reasons) == selection.paper_count
    names = [s.name for s in selection.sections]
    for reason in reasons:
        topic, _, terms = reason.partition(": ")
        assert topic in names, reason
        assert len([t for t in terms.split(", ") if t]) <= 2, reason
        assert "closest to" not in reason
        assert "mentions" not in reason
        for term in filter(None, terms.split(", ")):
            words = term.lower().split()
            assert words[0] not in ("and", "or", "of", "that", "for"), reason
            assert term.lower() not in ("models", "model", "large", "llm", "language", "learning"), reason
    assert "closest to ‘" not in text_part
