"""One reader's ranking model: a small linear classifier over paper vectors, trained on their votes.

Why (in the spirit of arxiv-sanity's per-tag SVM and Scholar Inbox's per-user classifier): two readers of
one topic want different papers first, and a handful of "more/less like this" clicks says which. For one
reader and one edition, a logistic regression is fitted on

* the papers they asked for more of (label 1),
* the papers they asked for less of and the edition's candidate papers of their topics (label 0; the
  candidates are unlabelled background, weighted so that together they count as much as the votes),

and each candidate is scored by its decision value, standardised over the candidates (a z-score, clipped to
±3). A reader who only asked for less gets the mirror model (their "less" papers against the background,
negated). The rank adjustment is that score times ``PREFERENCE_WEIGHT`` times the spread of the section's
shared ranks, scaled by how many votes the reader has (``vote_weight``): with no votes there is no model and
the shared order stands (cold start from their topics); each vote moves the order a little more, up to
``FULL_WEIGHT_VOTES``.

Pure: vectors in, scores out. ``newsletter.editions.preferences`` chooses the vectors (TF-IDF, or the stored
embeddings when the embedding method is configured) and loads the votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PREFERENCE_WEIGHT = 1.0
"""A fully trained reader's preference (a z-score) moves a paper by this many standard deviations of their
section's shared ranks: enough to reorder a section, not enough to bury its best paper under a poor match
for one vote. Chosen on bench/reader_ranking.py (docs/benchmarks.md)."""
FULL_WEIGHT_VOTES = 10
"""Votes after which a reader's model counts fully; fewer votes count proportionally."""
_CLIP = 3.0


def vote_weight(votes: int) -> float:
    """How much of ``PREFERENCE_WEIGHT`` a reader with this many votes gets: 0 without votes, 1 from
    ``FULL_WEIGHT_VOTES`` on."""
    return min(max(votes, 0), FULL_WEIGHT_VOTES) / FULL_WEIGHT_VOTES


def preference_scores(matrix: Any, candidates: Sequence[int], liked: Sequence[int],
                      disliked: Sequence[int]) -> np.ndarray:
    """Per candidate: how much this reader prefers it over the other candidates (z-score in [-3, 3]).

    ``matrix`` holds one paper vector per row (dense or sparse); the other arguments are row numbers in
    it. All zeros when there is nothing to learn from (no votes, or fewer than two candidates).
    """
    count = len(candidates)
    if count < 2 or not (liked or disliked):
        return np.zeros(count)
    from sklearn.linear_model import LogisticRegression

    flip = not liked
    target, other = (disliked, liked) if flip else (liked, disliked)
    votes = len(target) + len(other)
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(other) + count)])
    weights = np.concatenate([np.ones(votes), np.full(count, votes / count)])
    model = LogisticRegression(C=1.0, solver="liblinear", dual=True)  # dual: cost grows with papers, not words
    model.fit(matrix[[*target, *other, *candidates]], labels, sample_weight=weights)
    raw = np.asarray(model.decision_function(matrix[list(candidates)]), dtype=np.float64)
    if flip:
        raw = -raw
    spread = float(raw.std())
    if spread < 1e-9:
        return np.zeros(count)
    scores: np.ndarray = np.clip((raw - raw.mean()) / spread, -_CLIP, _CLIP)
    return scores


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
