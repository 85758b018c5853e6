"""Each reader's own ranking within their topics, from their "more like this" / "less like this" clicks.

Why (Scholar Inbox-style): two readers of one topic want different papers first. For every reader with
votes, a small model (``newsletter.editions.reader_model``) is trained on the papers they voted on and
scores the edition's papers of the topics they receive; its adjustment is added to those papers' ranks,
so it re-orders (and picks) papers within the reader's own sections and never adds a paper of a topic they
do not receive. Only votes of active readers in topics they still receive count
(``subscribers.feedback.FeedbackStore.reader_votes``).

Vectors: TF-IDF over the edition's and the voted papers' texts by default; with ``[matching] method =
"embedding"`` the stored paper embeddings, when every paper involved has one (nothing is embedded here, so
`send` never loads the model; otherwise TF-IDF is used).

Readers without votes keep the shared ranking (and share their rendered variant with everyone alike); a
reader with votes has their own selection, hence usually their own variant.
``reader_boosts`` is pure (texts or vectors and votes in, rank adjustments out); ``feedback_boosts`` loads
its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from newsletter.config import MatchingSettings
from newsletter.editions.reader_model import PREFERENCE_WEIGHT as PREFERENCE_WEIGHT
from newsletter.editions.reader_model import rank_adjustments
from newsletter.records.editions import PIN_RANK, Edition
from newsletter.records.papers import Paper
from newsletter.storage.embeddings import EmbeddingStore
from newsletter.storage.papers import PaperStore
from subscribers.feedback import FeedbackStore


def _matrix(texts: Sequence[str], ids: Sequence[str], vectors: Mapping[str, np.ndarray] | None) -> Any:
    """The stored embedding rows of ``ids`` when all are there, else TF-IDF rows of ``texts``."""
    if vectors is not None and all(pid in vectors for pid in ids):
        return np.vstack([vectors[pid] for pid in ids]).astype(np.float32, copy=False)
    from sklearn.feature_extraction.text import TfidfVectorizer  # only when some reader voted: `send` stays light

    return TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32).fit_transform(texts)


def reader_boosts(
    edition: Edition,
    votes: Mapping[int, Mapping[str, int]],
    voted: Mapping[str, Paper],
    topics: Mapping[int, Sequence[str]],
    *,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> dict[int, dict[str, float]]:
    """Per reader with votes: ``{paper_id: rank adjustment}`` for the edition's papers of their ``topics``.

    ``vectors``: stored embeddings by paper id (used when every paper involved has one).
    """
    readers = {reader: {pid: v for pid, v in theirs.items() if pid in voted} for reader, theirs in votes.items()}
    readers = {reader: theirs for reader, theirs in readers.items() if theirs}
    if not readers or not edition.papers:
        return {}
    ids = list(edition.papers)
    voted_ids = list(dict.fromkeys(pid for theirs in readers.values() for pid in theirs))
    texts = [f"{edition.papers[p].title}. {edition.papers[p].abstract}" for p in ids]
    texts += [f"{voted[p].title}. {voted[p].abstract}" for p in voted_ids]
    matrix = _matrix(texts, ids + voted_ids, vectors)
    row = {pid: i for i, pid in enumerate(ids)}
    column = {pid: len(ids) + i for i, pid in enumerate(voted_ids)}
    boosts: dict[int, dict[str, float]] = {}
    for reader, theirs in readers.items():
        wanted = [edition.topic_map[s] for s in dict.fromkeys(topics.get(reader, ())) if s in edition.topic_map]
        best: dict[str, float] = {}
        for entry in (e for t in wanted for e in t.entries):
            best[entry.paper_id] = max(entry.rank, best.get(entry.paper_id, entry.rank))
        candidates = list(best)
        if not candidates:
            continue
        liked = [column[p] for p, v in theirs.items() if v > 0]
        disliked = [column[p] for p, v in theirs.items() if v < 0]
        adjustments = rank_adjustments(matrix, [row[p] for p in candidates], liked, disliked,
                                       ranks=[r for r in best.values() if r < PIN_RANK])  # pins aside
        boosts[reader] = {pid: round(float(a), 4) for pid, a in zip(candidates, adjustments, strict=True)}
    return boosts


def _stored_vectors(engine: Engine, matching: MatchingSettings, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
    from newsletter.matching.embeddings import MiniLMEncoder  # the name only: torch is not imported

    model = MiniLMEncoder(max_tokens=matching.embedding_max_tokens).name
    return {pid: vector for pid, (_hash, vector) in EmbeddingStore(engine).load(paper_ids, model=model).items()}


def feedback_boosts(
    edition: Edition,
    papers: PaperStore,
    engine: Engine,
    readers: Sequence[tuple[int, Sequence[str]]],
    *,
    matching: MatchingSettings | None = None,
) -> dict[int, dict[str, float]]:
    """``reader_boosts`` for these ``(subscriber id, topics)``, from their stored votes and the voted papers.

    ``matching``: the configured matching settings; with the embedding method, stored vectors are used.
    """
    votes = FeedbackStore(engine).reader_votes([reader for reader, _topics in readers])
    if not votes:
        return {}
    voted = papers.get_many(list(dict.fromkeys(pid for theirs in votes.values() for pid in theirs)))
    vectors = None
    if matching is not None and matching.method == "embedding":
        vectors = _stored_vectors(engine, matching, [*edition.papers, *voted])
    return reader_boosts(edition, votes, voted, dict(readers), vectors=vectors)
