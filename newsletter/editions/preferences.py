"""Each reader's own ranking within their topics, from their "more like this" / "less like this" clicks.

Why (Scholar Inbox-style): two readers of one topic want different papers first. A reader's votes name
papers of past editions; the papers of a new edition are ranked up by their TF-IDF similarity to the papers
the reader asked for more of, and down by their similarity to those they asked for less of:

    rank += PREFERENCE_WEIGHT × (max similarity to a "more" paper − max similarity to a "less" paper)

Readers without votes keep the shared ranking (and share their rendered variant with everyone alike).
``reader_boosts`` is pure (texts and votes in, rank adjustments out); ``feedback_boosts`` loads its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy.engine import Engine

from newsletter.records.editions import Edition
from newsletter.records.papers import Paper
from newsletter.storage.papers import PaperStore
from subscribers.feedback import FeedbackStore

PREFERENCE_WEIGHT = 3.0
"""Ranks are trending score (about 1–6) + match strength; a close "more" paper is worth a few upvotes' rank."""


def reader_boosts(
    edition: Edition, votes: Mapping[int, Mapping[str, int]], voted: Mapping[str, Paper]
) -> dict[int, dict[str, float]]:
    """Per reader with votes: ``{paper_id: rank adjustment}`` for the papers of ``edition``."""
    readers = {reader: {pid: v for pid, v in theirs.items() if pid in voted} for reader, theirs in votes.items()}
    readers = {reader: theirs for reader, theirs in readers.items() if theirs}
    if not readers or not edition.papers:
        return {}
    from sklearn.feature_extraction.text import TfidfVectorizer  # only when some reader voted: `send` stays light

    ids = list(edition.papers)
    voted_ids = list(dict.fromkeys(pid for theirs in readers.values() for pid in theirs))
    texts = [f"{edition.papers[p].title}. {edition.papers[p].abstract}" for p in ids]
    texts += [f"{voted[p].title}. {voted[p].abstract}" for p in voted_ids]
    matrix = TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    similarity = np.asarray((matrix[: len(ids)] @ matrix[len(ids) :].T).toarray())
    column = {pid: i for i, pid in enumerate(voted_ids)}
    boosts: dict[int, dict[str, float]] = {}
    for reader, theirs in readers.items():
        more = [column[p] for p, v in theirs.items() if v > 0]
        less = [column[p] for p, v in theirs.items() if v < 0]
        up = similarity[:, more].max(axis=1) if more else np.zeros(len(ids))
        down = similarity[:, less].max(axis=1) if less else np.zeros(len(ids))
        boosts[reader] = {pid: round(float(PREFERENCE_WEIGHT * (u - d)), 4) for pid, u, d in zip(ids, up, down,
                                                                                                 strict=True)}
    return boosts


def feedback_boosts(
    edition: Edition, papers: PaperStore, engine: Engine, subscriber_ids: Sequence[int]
) -> dict[int, dict[str, float]]:
    """``reader_boosts`` for these readers, from their stored votes and the voted papers in the store."""
    votes = FeedbackStore(engine).reader_votes(list(subscriber_ids))
    if not votes:
        return {}
    voted = papers.get_many(list(dict.fromkeys(pid for theirs in votes.values() for pid in theirs)))
    return reader_boosts(edition, votes, voted)
