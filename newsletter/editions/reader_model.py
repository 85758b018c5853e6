"""One reader's ranking model: a Rocchio-style profile over paper vectors, trained on their votes and held
back wherever the votes do not support it.

Why (in the spirit of arxiv-sanity's per-tag SVM and Scholar Inbox's per-user classifier): two readers of
one topic want different papers first, and a handful of "more/less like this" clicks says which. A first
version fitted a logistic regression per reader and moved every candidate by its standardised decision
value: with stored MiniLM vectors it made niche readers' rankings *worse* (NDCG@10 0.411 → 0.350 at 10
votes, docs/benchmarks.md). Three causes, each fixed here:

* **"Less"-only readers got the mirror model**, which lifts whatever is least like their "less" papers. A
  reader who asks for less of a typical paper of their topic then sees the matcher's off-topic intruders
  rise. Now "less" votes alone only push down papers like the ones voted on; they never lift a paper.
* **A z-score has no magnitude**: a direction fitted to a few noisy votes moved the order as far as a
  clear one. Now a reader's preference moves a paper by at most ``CAP`` standard deviations of the
  section's ranks (a bounded boost: the shared order of their topics, the cold start, keeps the rest).
* **Nothing checked the model against the votes.** Now each vote is predicted by the profile fitted on the
  others (leave-one-out); votes the profile gets wrong on balance (contradictory votes, e.g. "more" and
  "less" on near-identical papers) shrink the adjustment to nothing (``agreement``).

The profile is the difference of the mean vector of the "more" papers and that of the "less" papers (a
missing side is the mean of the candidates), in the spirit of Rocchio's relevance feedback; a candidate's
score is its dot product with the profile, standardised over the candidates. It has no fitting, so a
reader's leave-one-out check costs one matrix of dot products.

Pure: vectors in, scores out. ``newsletter.editions.preferences`` chooses the vectors (TF-IDF, or the stored
embeddings when the embedding method is configured) and loads the votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PREFERENCE_WEIGHT = 1.0
"""A fully trained, consistent reader's preference moves a paper by up to this many times ``CAP``
standard deviations of their section's shared ranks. Chosen on bench/reader_ranking.py
(docs/benchmarks.md)."""
CAP = 1.5
"""The standardised preference is clipped to ±``CAP``: one reader's votes reorder their section but cannot
bury its best match under a poor one on the strength of a few votes."""
FULL_WEIGHT_VOTES = 10
"""Votes after which a reader's model counts fully; fewer votes count proportionally."""
AGREEMENT_SLOPE = 1.0
"""The adjustment is scaled by ``1 + AGREEMENT_SLOPE × agreement``, kept within [0, 1]: votes that the
leave-one-out profile predicts no worse than chance keep it whole, and it shrinks with the balance of wrong
predictions, to nothing when every vote is predicted wrong. (A slope of 2, nothing from a balance of 0.5,
cost area readers 0.005 NDCG@10 at 5 TF-IDF votes on bench/reader_ranking.py and gained nothing.)"""


def vote_weight(votes: int) -> float:
    """How much of ``PREFERENCE_WEIGHT`` a reader with this many votes gets: 0 without votes, 1 from
    ``FULL_WEIGHT_VOTES`` on."""
    return min(max(votes, 0), FULL_WEIGHT_VOTES) / FULL_WEIGHT_VOTES


def _gram(matrix: Any, rows: Sequence[int]) -> np.ndarray:
    """Dot products between the given rows of ``matrix`` (dense or sparse)."""
    block = matrix[list(rows)]
    product = block @ block.T
    dense = product.toarray() if hasattr(product, "toarray") else product
    gram: np.ndarray = np.asarray(dense, dtype=np.float64)
    return gram


def _held_out_means(gram: np.ndarray, side: slice, centroid: np.ndarray) -> np.ndarray:
    """Column i: every row's dot product with the mean of ``side``'s vectors without vote i (the
    candidates' mean when vote i is that side's only one)."""
    block = gram[:, side]
    count = block.shape[1]
    if count == 1:
        return centroid[:, None].copy()
    result: np.ndarray = (block.sum(axis=1, keepdims=True) - block) / (count - 1)
    return result


def _agreement_of(held_out: np.ndarray, rows: range, candidates: int, sign: float) -> list[float]:
    """Per vote: the share of candidates its held-out profile puts below it, less the share above
    (``sign`` −1 for "less" votes: below means above)."""
    result = []
    for i, row in enumerate(rows):
        difference = sign * (held_out[row, i] - held_out[:candidates, i])
        result.append(float(np.mean(np.sign(difference))))
    return result


def agreement(gram: np.ndarray, candidates: int, liked: int, disliked: int) -> float:
    """How well the profile predicts each vote from the others, in [-1, 1]: 1 when every held-out "more"
    paper scores above all candidates and every "less" paper below, 0 for chance, averaged over the two
    kinds of votes so that the more frequent kind does not decide alone.

    ``gram``: dot products of the candidates, then the "more", then the "less" papers.
    """
    centroid = gram[:, :candidates].mean(axis=1)
    more = slice(candidates, candidates + liked)
    less = slice(candidates + liked, candidates + liked + disliked)
    more_mean = gram[:, more].mean(axis=1) if liked else centroid
    less_mean = gram[:, less].mean(axis=1) if disliked else centroid
    kinds = []
    if liked:
        held_out = _held_out_means(gram, more, centroid) - less_mean[:, None]
        kinds.append(_agreement_of(held_out, range(more.start, more.stop), candidates, 1.0))
    if disliked:
        held_out = more_mean[:, None] - _held_out_means(gram, less, centroid)
        kinds.append(_agreement_of(held_out, range(less.start, less.stop), candidates, -1.0))
    return float(np.mean([np.mean(kind) for kind in kinds]))


def preference_scores(matrix: Any, candidates: Sequence[int], liked: Sequence[int],
                      disliked: Sequence[int]) -> np.ndarray:
    """Per candidate: how much this reader prefers it over the other candidates, in [-CAP, CAP] and
    already scaled by the votes' ``agreement``; never above 0 for a reader with only "less" votes.

    ``matrix`` holds one paper vector per row (dense or sparse); the other arguments are row numbers in
    it. All zeros when there is nothing to learn from (no votes, or fewer than two candidates).
    """
    count = len(candidates)
    if count < 2 or not (liked or disliked):
        return np.zeros(count)
    gram = _gram(matrix, [*candidates, *liked, *disliked])
    centroid = gram[:count, :count].mean(axis=1)
    more = gram[:count, count : count + len(liked)].mean(axis=1) if liked else centroid
    less = gram[:count, count + len(liked) :].mean(axis=1) if disliked else centroid
    raw = more - less
    spread = float(raw.std())
    if spread < 1e-9:
        return np.zeros(count)
    scores: np.ndarray = np.clip((raw - raw.mean()) / spread, -CAP, CAP)
    if not liked:
        scores = np.minimum(scores, 0.0)  # "less" alone pushes down; it never lifts what is unlike it
    trust = min(max(1.0 + AGREEMENT_SLOPE * agreement(gram, count, len(liked), len(disliked)), 0.0), 1.0)
    result: np.ndarray = trust * scores
    return result


def rank_adjustments(matrix: Any, candidates: Sequence[int], liked: Sequence[int], disliked: Sequence[int],
                     *, ranks: Sequence[float]) -> np.ndarray:
    """What to add to each candidate's rank (``ranks``: the shared ranks of the reader's section papers).

    ``preference_scores`` × ``PREFERENCE_WEIGHT`` × ``vote_weight`` × the spread (standard deviation) of
    ``ranks``: one unit of the reader's preference moves a paper as far as the section's own order varies,
    whatever the scale of the ranks (trending scores, match strengths).
    """
    spread = float(np.std(ranks)) if len(ranks) > 1 else 0.0
    weight = PREFERENCE_WEIGHT * vote_weight(len(liked) + len(disliked)) * (spread if spread > 1e-9 else 1.0)
    adjustments: np.ndarray = weight * preference_scores(matrix, candidates, liked, disliked)
    return adjustments
