"""The calibrated decision rule: which topics a paper joins, from similarities on different per-topic scales.

Why: a fixed similarity threshold assumes every topic scores on the same scale, and they do not. With
description-only topics, TF-IDF cosines sit around 0.02–0.05 (the old default of 0.12 left 95 % of papers
unmatched) and sentence-embedding cosines differ per topic (a maths paper scores 0.18 against its own
topic, an astrophysics paper 0.43 against its own). So, for both methods:

1. **Baseline per topic.** Each topic's baseline is a low quantile (``BASELINE_QUANTILE``) of its
   similarities to the papers of the reference corpus (the batch plus the recent stored papers) whose best
   topic is *another* one: how much an unrelated paper scores against it. Half of it (``BASELINE_WEIGHT``)
   is taken off every similarity to the topic. A plain z-score was measured and rejected: when most papers
   of the corpus belong to one topic (75 % computer science on the fixtures), that topic's mean and spread
   are its own papers' and its members get low z-scores (macro-F1 0.71 → 0.38 on the labelled fixtures).
2. **Relative strength.** A paper joins its best topic by calibrated score, and every other topic within
   ``margin`` of it.
3. **Absolute floor.** ...but only where its raw similarity reaches ``floor``, so a paper about nothing
   configured stays unmatched.

Adding a topic changes only which topic is best for the papers it claims: no threshold to retune.

**Self-training** (``self_train``): the papers that clearly belong to a topic (the most confident
``CONFIDENT_SHARE`` of those assigned to it) are averaged into a centroid, and each similarity to the topic
becomes the mean of the original one and the similarity to that centroid. Cheap (one matrix product per
topic), it runs on every fetch over the reference corpus, so a topic learns the vocabulary its papers use.

**Examples** (``with_examples``): a topic's ``examples`` (papers) work the same way as confident papers, and
its ``not_examples`` push away papers closer to them than to the topic.

Pure: arrays in, arrays out; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BASELINE_QUANTILE = 25.0
BASELINE_WEIGHT = 0.5
CONFIDENT_SHARE = 0.8
MIN_CONFIDENT = 3
"""A topic with fewer assigned papers than this learns nothing from the corpus (its centroid would be noise)."""
LEARNED_WEIGHT = 0.5
EXAMPLE_WEIGHT = 0.5
NOT_EXAMPLE_WEIGHT = 0.5


@dataclass(frozen=True, kw_only=True)
class DecisionRule:
    """How similarities become matches (``[matching] decision``, ``margin``, ``*_floor``, ``self_training``,
    ``background``, ``*_background_rank``, ``*_background_margin``, ``embedding_background_neighbours``)."""

    calibrated: bool = True
    """False: the old rule, ``similarity >= threshold`` per topic."""
    margin: float = 0.0
    floor: float = 0.0
    threshold: float = 0.0
    self_training: bool = True
    background: bool = False
    """``calibrated`` only: a topic must also rank among the paper's best subjects next to the background areas
    (``newsletter.matching.background``)."""
    background_rank: int = 1
    """A topic passes the background when fewer than this many uncovered areas score above it."""
    background_margin: float = 0.0
    background_neighbours: int = 0
    """Nearest corpus papers whose scores each paper's are averaged with before the rank (0: none; embeddings)."""


def _rows(features: Any, index: np.ndarray) -> np.ndarray:
    """Mean of the given rows of a dense or sparse (CSR) feature matrix, L2-normalised, as a dense vector."""
    centroid: np.ndarray = np.asarray(features[index].mean(axis=0)).ravel().astype(np.float32)
    norm = float(np.linalg.norm(centroid))
    return centroid / norm if norm > 0 else centroid


def dense(product: Any) -> np.ndarray:
    """A matrix product of dense or sparse operands as a dense float32 array."""
    if hasattr(product, "toarray"):
        product = product.toarray()
    result: np.ndarray = np.asarray(product, dtype=np.float32)
    return result


def _similarity_to(features: Any, vector: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.clip(dense(features @ vector).ravel(), 0.0, 1.0)
    return result


def baselines(similarities: np.ndarray) -> np.ndarray:
    """Per topic, the ``BASELINE_QUANTILE`` of its similarities to papers whose best topic is another one."""
    rows, topics = similarities.shape
    if rows == 0 or topics == 0:
        return np.zeros(topics, dtype=np.float32)
    best = similarities.argmax(axis=1)
    result = np.zeros(topics, dtype=np.float32)
    for column in range(topics):
        others = similarities[best != column, column]
        sample = others if len(others) >= MIN_CONFIDENT else similarities[:, column]
        result[column] = float(np.percentile(sample, BASELINE_QUANTILE))
    return result


def calibrate(similarities: np.ndarray, *, reference: np.ndarray | None = None) -> np.ndarray:
    """Similarities minus ``BASELINE_WEIGHT`` × each topic's baseline, measured on ``reference`` rows."""
    base = baselines(similarities if reference is None else reference)
    calibrated: np.ndarray = similarities - BASELINE_WEIGHT * base[np.newaxis, :]
    return calibrated


def decide(
    similarities: np.ndarray, *, margin: float, floor: float, reference: np.ndarray | None = None
) -> np.ndarray:
    """Boolean matrix: the best topic(s) of each paper by calibrated score (within ``margin``), raw ≥ ``floor``."""
    if similarities.size == 0:
        return np.zeros(similarities.shape, dtype=bool)
    calibrated = calibrate(similarities, reference=reference)
    best = calibrated.max(axis=1, keepdims=True)
    selected: np.ndarray = (calibrated >= best - margin - 1e-9) & (similarities >= floor) & (similarities > 0)
    return selected


def self_train(similarities: np.ndarray, features: Any) -> np.ndarray:
    """Each topic's similarities averaged with the similarity to the centroid of its most confident papers.

    ``features`` has one L2-normalised row per row of ``similarities`` (embeddings, or TF-IDF rows). Topics
    with fewer than ``MIN_CONFIDENT`` assigned papers are left as they are.
    """
    rows, topics = similarities.shape
    if rows < MIN_CONFIDENT or topics == 0:
        return similarities
    calibrated = calibrate(similarities)
    assigned = calibrated.argmax(axis=1)
    ordered = np.sort(calibrated, axis=1)
    confidence = ordered[:, -1] - (ordered[:, -2] if topics > 1 else 0.0)
    learned = similarities.copy()
    for column in range(topics):
        members = np.flatnonzero((assigned == column) & (similarities[:, column] > 0))
        if len(members) < MIN_CONFIDENT:
            continue
        cut = np.quantile(confidence[members], 1.0 - CONFIDENT_SHARE)
        confident = members[confidence[members] >= cut]
        centroid = _rows(features, confident)
        learned[:, column] = (1 - LEARNED_WEIGHT) * similarities[:, column] + LEARNED_WEIGHT * _similarity_to(
            features, centroid
        )
    return learned


@dataclass(frozen=True)
class ExampleEvidence:
    """Per topic (column), the features of its example and not-example papers (None: it has none)."""

    positive: Sequence[Any | None]
    negative: Sequence[Any | None]


def with_examples(
    similarities: np.ndarray, features: Any, evidence: ExampleEvidence
) -> tuple[np.ndarray, np.ndarray]:
    """Similarities with each topic's examples blended in, and per cell the index of the closest example (-1).

    A topic with examples: the mean of its description similarity and the similarity to its examples'
    centroid. With not-examples: a paper closer to them than to the topic loses ``NOT_EXAMPLE_WEIGHT`` of
    the difference.
    """
    result = similarities.copy()
    closest = np.full(similarities.shape, -1, dtype=np.int64)
    for column, (positive, negative) in enumerate(zip(evidence.positive, evidence.negative, strict=True)):
        if positive is not None and positive.shape[0]:
            to_each = dense(features @ positive.T)
            closest[:, column] = to_each.argmax(axis=1)
            centroid = _rows(positive, np.arange(positive.shape[0]))
            result[:, column] = (1 - EXAMPLE_WEIGHT) * similarities[:, column] + EXAMPLE_WEIGHT * _similarity_to(
                features, centroid
            )
        if negative is not None and negative.shape[0]:
            away = _similarity_to(features, _rows(negative, np.arange(negative.shape[0])))
            result[:, column] -= NOT_EXAMPLE_WEIGHT * np.clip(away - result[:, column], 0.0, None)
    return np.clip(result, 0.0, 1.0), closest
