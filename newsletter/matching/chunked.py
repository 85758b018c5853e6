"""TF-IDF topic matching of a large batch a chunk of papers at a time, with the matches of matching it at once.

Why: a 100,000-item feed was matched in one piece: every paper, its text, scikit-learn's lists of every word and
a dozen dense rows × 158 arrays at once (1.4 GB, issue 30). Here the papers are read a chunk at a time (twice:
to score, then to decide and explain), and what stays in memory for the whole batch is its sparse TF-IDF rows
and one float32 array of rows × columns (the topics, and the arXiv areas of the open world).

Same matches: ``scoring.match_with`` with ``TfidfMatcher`` computes row by row (similarities, example papers,
reasons, the rank among the areas) or over a whole column (each column's baseline, its confident papers and
their centroid in self-training, the calibrated rule's baselines). The row-by-row steps run a chunk at a time;
the column steps see every row, as before. The TF-IDF space gives the rows ``TfidfVectorizer`` gives
(``space.TfidfSpace``), so every number is the same; ``tests/test_matching_chunks.py`` compares the matches
of a real feed cut in chunks with those of ``TfidfMatcher.match``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from newsletter.config import TopicSettings
from newsletter.matching.background import absorbed, area_topics, topic_area_similarity
from newsletter.matching.calibration import (
    BASELINE_WEIGHT,
    CONFIDENT_SHARE,
    LEARNED_WEIGHT,
    MIN_CONFIDENT,
    ExampleEvidence,
    _rows,
    _similarity_to,
    baselines,
    decide,
    dense,
    with_examples,
)
from newsletter.matching.evidence import Scored, TopicExamples, topic_facets
from newsletter.matching.rules import apply_rules, closest_facets, paper_text, topic_text
from newsletter.matching.scoring import ScoringMatcher, attach_examples
from newsletter.matching.space import TfidfSpace
from newsletter.records.papers import Paper, TopicMatch

STEP = 4096
"""Rows per step of the row-by-row array work (bounds its temporaries)."""

MatchWriter = Callable[[Sequence[str], list[TopicMatch]], None]
"""Stores one chunk's matches: the chunk's paper ids (their old matches go) and the new matches."""


def match_in_chunks(
    matcher: ScoringMatcher,
    chunks: Iterable[Sequence[str]],
    load: Callable[[Sequence[str]], Mapping[str, Paper]],
    topics: Sequence[TopicSettings],
    *,
    write: MatchWriter,
    background: Sequence[Paper] = (),
    examples: TopicExamples | None = None,
    threshold: float | None = None,
) -> int:
    """Match the papers of ``chunks`` (ids, read with ``load``) as ``matcher.match`` would match them all at once,
    handing each chunk's matches to ``write``; returns how many papers were matched.

    ``matcher`` is a ``TfidfMatcher`` (its ``rule`` decides). Ids ``load`` no longer finds lose their matches.
    """
    rule = matcher.rule
    blocks = [list(ids) for ids in chunks]
    open_world = threshold is None and rule.calibrated and rule.background and bool(topics)
    columns = [*topics, *area_topics()] if open_world else list(topics)
    space = TfidfSpace()
    kept: list[list[str]] = []
    for ids in blocks:
        found = load(ids)
        kept.append([i for i in ids if i in found])
        space.add([paper_text(found[i]) for i in kept[-1]])
    papers = sum(len(ids) for ids in kept)
    if not papers or not topics:
        for ids in blocks:
            write(ids, [])
        return papers
    seen = {i for ids in kept for i in ids}
    extra = [paper_text(p) for p in background if p.paper_id not in seen]
    if extra:
        space.add(extra)
    space.add([topic_text(t) for t in columns])
    space.fit()
    corpus = [space.block(index) for index in range(len(kept) + (1 if extra else 0))]
    topic_rows = space.block(-1)
    featurise = _featuriser(space)
    similarities = _similarities(corpus, topic_rows, _evidence(columns, examples, featurise))
    count = len(topics)
    learned = similarities[:, :count].copy()
    beats = None
    if open_world:
        own = absorbed(topic_area_similarity(topics, matcher))
        if rule.self_training:
            _self_train(similarities, corpus)
        beats = _beats(similarities, count, own, margin=rule.background_margin, rank=rule.background_rank)
    del similarities
    if rule.self_training:
        _self_train(learned, corpus)
    if threshold is not None or not rule.calibrated:
        selected = learned[:papers] >= (rule.threshold if threshold is None else threshold)
    else:
        selected = decide(learned, margin=rule.margin, floor=rule.floor)[:papers]
        if beats is not None:
            selected &= beats[:papers]
    start = 0
    for ids, rows, block in zip(blocks, kept, corpus, strict=False):
        stop = start + len(rows)
        _decide_chunk(ids, rows, load, block, topic_rows[:count], topics, learned[start:stop], selected[start:stop],
                      examples, space, write)
        start = stop
    return papers


def _featuriser(space: TfidfSpace) -> Callable[[Sequence[Paper]], Any]:
    return lambda chosen: space.transform([paper_text(p) for p in chosen])


def _evidence(columns: Sequence[TopicSettings], examples: TopicExamples | None,
              featurise: Callable[[Sequence[Paper]], Any]) -> ExampleEvidence | None:
    """The example papers' rows, as ``scoring.attach_examples`` makes them (None: no column has any)."""
    pairs = [(examples or {}).get(t.slug, ((), ())) for t in columns]
    if not any(pos or neg for pos, neg in pairs):
        return None
    return ExampleEvidence([featurise(list(pos)) if pos else None for pos, _ in pairs],
                           [featurise(list(neg)) if neg else None for _, neg in pairs])


def _similarities(corpus: Sequence[sp.csr_array], topic_rows: sp.csr_array,
                  evidence: ExampleEvidence | None) -> np.ndarray:
    """Rows × columns: each row's cosine to each column's text, with the columns' example papers blended in."""
    result = np.empty((sum(b.shape[0] for b in corpus), topic_rows.shape[0]), dtype=np.float32)
    start = 0
    for block in corpus:
        raw = dense(block @ topic_rows.T)
        result[start : start + block.shape[0]] = raw if evidence is None else with_examples(raw, block, evidence)[0]
        start += block.shape[0]
    return result


def _self_train(similarities: np.ndarray, corpus: Sequence[sp.csr_array]) -> None:
    """``calibration.self_train`` in place, a block of rows at a time where a step is row by row."""
    rows, columns = similarities.shape
    if rows < MIN_CONFIDENT or columns == 0:
        return
    shift = BASELINE_WEIGHT * baselines(similarities)[np.newaxis, :]
    assigned = np.empty(rows, dtype=np.intp)
    confidence = np.empty(rows, dtype=np.float32)
    for start in range(0, rows, STEP):
        calibrated = similarities[start : start + STEP] - shift
        assigned[start : start + STEP] = calibrated.argmax(axis=1)
        ordered = np.sort(calibrated, axis=1)
        confidence[start : start + STEP] = ordered[:, -1] - (ordered[:, -2] if columns > 1 else 0.0)
    starts = np.cumsum([0] + [block.shape[0] for block in corpus])
    for column in range(columns):
        members = np.flatnonzero((assigned == column) & (similarities[:, column] > 0))
        if len(members) < MIN_CONFIDENT:
            continue
        cut = np.quantile(confidence[members], 1.0 - CONFIDENT_SHARE)
        confident = members[confidence[members] >= cut]
        centroid = _centroid(corpus, starts, confident)
        for block, start in zip(corpus, starts, strict=False):
            part = similarities[start : start + block.shape[0], column]
            part[:] = (1 - LEARNED_WEIGHT) * part + LEARNED_WEIGHT * _similarity_to(block, centroid)


def _centroid(corpus: Sequence[sp.csr_array], starts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``calibration._rows`` of the corpus's rows ``index`` (ascending), gathered from the blocks in order."""
    which = np.searchsorted(starts, index, side="right") - 1
    parts = [corpus[b][index[which == b] - starts[b]] for b in np.unique(which)]
    gathered = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
    return _rows(gathered, np.arange(gathered.shape[0]))


def _beats(joint: np.ndarray, count: int, own: np.ndarray, *, margin: float, rank: int) -> np.ndarray:
    """``background.beats_background`` after its self-training, a block of rows at a time."""
    rows = joint.shape[0]
    competing = ~own.any(axis=0) if own.size else np.ones(joint.shape[1] - count, dtype=bool)
    if not competing.any():
        return np.ones((rows, count), dtype=bool)
    result = np.zeros((rows, count), dtype=bool)
    for start in range(0, rows, STEP):
        mine = joint[start : start + STEP, :count]
        competitors = joint[start : start + STEP, count:][:, competing]
        for column in range(count):
            above = (competitors > mine[:, column : column + 1] + margin + 1e-9).sum(axis=1)
            result[start : start + STEP, column] = above < max(rank, 1)
    return result


def _decide_chunk(
    ids: Sequence[str],
    rows: Sequence[str],
    load: Callable[[Sequence[str]], Mapping[str, Paper]],
    block: sp.csr_array,
    topic_rows: sp.csr_array,
    topics: Sequence[TopicSettings],
    learned: np.ndarray,
    selected: np.ndarray,
    examples: TopicExamples | None,
    space: TfidfSpace,
    write: MatchWriter,
) -> None:
    """One chunk's matches with their reasons (``rules.apply_rules``), from the batch's decisions."""
    found = load(rows)
    present = np.array([i in found for i in rows], dtype=bool)  # a paper removed since the first read: no matches
    chunk = [found[i] for i in rows if i in found]
    if not present.all():
        block, learned, selected = block[present], learned[present], selected[present]
    facets = [topic_facets(t) for t in topics]
    scored = Scored(similarities=dense(block @ topic_rows.T), features=block, facets=facets,
                    closest_facet=closest_facets(block, facets, space.transform))
    scored = attach_examples(scored, topics, examples, _featuriser(space))
    write(ids, apply_rules(chunk, topics, learned, selected=selected, scored=scored))
