"""Issue 30: a large batch is matched a chunk of papers at a time, into exactly the matches of matching it at once.

The papers are the real feeds of ``tests/fixtures`` (arXiv API, arXiv RSS and Hugging Face listings); the
reference is ``TfidfMatcher.match`` over the whole batch, as `refresh_matches` ran it before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from newsletter.config import MatchingSettings, TopicSettings
from newsletter.matching import chunked
from newsletter.matching.chunked import match_in_chunks
from newsletter.matching.matcher import build_matcher
from newsletter.matching.rules import paper_text, topic_text
from newsletter.matching.space import TfidfSpace
from newsletter.records.papers import Paper, TopicMatch
from newsletter.sources.parsing import parse_feed
from tests.conftest import fixture_path

TOPICS = [
    TopicSettings(slug="agents", name="LLM agents",
                  description="Autonomous agents built on large language models that plan, call tools and act.",
                  keywords=("agent", "tool use"), categories=("cs.MA",)),
    TopicSettings(slug="reasoning", name="Reasoning", description="Mathematical and multi-step reasoning of "
                  "language models.", keywords=("chain-of-thought",)),
    TopicSettings(slug="vision", name="Computer vision", description="Image recognition, segmentation, video "
                  "understanding.", exclude_keywords=("medical",)),
    TopicSettings(slug="physics", name="Quantum physics", description="Quantum information, entanglement, "
                  "condensed matter."),
]


def _real_papers() -> list[Paper]:
    papers: dict[str, Paper] = {}
    for kind, pattern in [("arxiv-api", "arxiv_api/*.xml"), ("arxiv-rss", "arxiv_rss/*.xml"),
                          ("hf-daily", "hf_daily_papers/*.json")]:
        for path in sorted(fixture_path(".").glob(pattern)):
            for paper in parse_feed(kind, path.read_bytes(), source="real").papers:
                papers.setdefault(paper.paper_id, paper)
    return list(papers.values())


PAPERS = _real_papers()


def _chunked(matching: MatchingSettings, papers: Sequence[Paper], size: int, **options: object) -> list[TopicMatch]:
    by_id = {p.paper_id: p for p in papers}
    ids = list(by_id)
    written: list[TopicMatch] = []
    written_ids: list[str] = []

    def write(chunk: Sequence[str], matches: list[TopicMatch]) -> None:
        written_ids.extend(chunk)
        written.extend(matches)

    count = match_in_chunks(build_matcher(matching), [ids[i : i + size] for i in range(0, len(ids), size)],
                            lambda chunk: {i: by_id[i] for i in chunk}, TOPICS, write=write, **options)  # type: ignore[arg-type]
    assert count == len(ids)
    assert written_ids == ids
    return written


def test_the_space_gives_scikit_learns_rows_bit_for_bit() -> None:
    texts = [paper_text(p) for p in PAPERS] + [topic_text(t) for t in TOPICS]
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32)
    whole = vectorizer.fit_transform(texts).tocsr()
    space = TfidfSpace()
    for start in range(0, len(texts), 13):
        space.add(texts[start : start + 13])
    space.fit()
    blocks = [space.block(i) for i in range((len(texts) + 12) // 13)]
    for start, block in zip(range(0, len(texts), 13), blocks, strict=True):
        part = whole[start : start + 13]
        assert np.array_equal(block.indptr, part.indptr)
        assert np.array_equal(block.indices, part.indices)
        assert block.data.dtype == np.float32
        assert np.array_equal(block.data, part.data)
    others = ["Quantum entanglement of agents", "a word never seen: zyxxy", ""]
    expected, got = vectorizer.transform(others).tocsr(), space.transform(others)
    assert np.array_equal(expected.indices, got.indices)
    assert np.array_equal(expected.data, got.data)


@pytest.mark.parametrize("size", [1, 7, 50, 10_000])
def test_chunks_match_as_the_whole_batch_does(size: int) -> None:
    matching = MatchingSettings()
    whole = build_matcher(matching).match(PAPERS, TOPICS)
    assert len({m.paper_id for m in whole}) > 20
    assert {m.topic for m in whole} >= {"agents", "vision"}
    assert _chunked(matching, PAPERS, size) == whole


def test_chunks_match_as_the_whole_batch_with_background_papers_and_examples() -> None:
    batch, stored = PAPERS[:70], PAPERS[40:]  # the stored papers overlap the batch, as recent ones do
    examples = {"agents": ((stored[-1], stored[-2]), (stored[-3],)), "physics": ((stored[-4],), ())}
    matching = MatchingSettings()
    whole = build_matcher(matching).match(batch, TOPICS, background=stored, examples=examples)
    assert any(m.closest_kind == "example" for m in whole)
    assert _chunked(matching, batch, 9, background=stored, examples=examples) == whole


@pytest.mark.parametrize("changes", [{"background": "none"}, {"self_training": False},
                                     {"decision": "threshold", "similarity_threshold": 0.05},
                                     {"tfidf_background_rank": 3, "margin": 0.02}])
def test_chunks_match_as_the_whole_batch_under_every_rule(changes: dict[str, object]) -> None:
    matching = dataclasses.replace(MatchingSettings(), **changes)  # type: ignore[arg-type]
    whole = build_matcher(matching).match(PAPERS, TOPICS)
    assert whole
    assert _chunked(matching, PAPERS, 11) == whole


def test_a_paper_gone_before_the_second_read_loses_its_matches_and_the_others_keep_theirs() -> None:
    by_id = {p.paper_id: p for p in PAPERS}
    ids = list(by_id)
    whole = build_matcher(MatchingSettings()).match(PAPERS, TOPICS)
    gone = whole[len(whole) // 2].paper_id
    reads = {"count": 0}

    def load(chunk: Sequence[str]) -> dict[str, Paper]:
        reads["count"] += 1
        late = reads["count"] > len(range(0, len(ids), 8))  # the second pass
        return {i: by_id[i] for i in chunk if not (late and i == gone)}

    written: list[TopicMatch] = []
    written_ids: list[str] = []
    match_in_chunks(build_matcher(MatchingSettings()), [ids[i : i + 8] for i in range(0, len(ids), 8)], load,
                    TOPICS, write=lambda chunk, matches: (written_ids.extend(chunk), written.extend(matches)))
    assert gone in written_ids  # its old matches are removed
    assert written == [m for m in whole if m.paper_id != gone]


def test_row_steps_do_not_change_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = build_matcher(MatchingSettings()).match(PAPERS, TOPICS)
    monkeypatch.setattr(chunked, "STEP", 3)
    assert _chunked(MatchingSettings(), PAPERS, 17) == whole
