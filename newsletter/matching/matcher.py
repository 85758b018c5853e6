"""The matcher interface and the factory that picks one from ``[matching] method``.

Two methods compute how similar a paper's title and abstract are to a topic's name, description and keywords:

- ``tfidf``: TF-IDF cosine over the words (``newsletter.matching.rules``), no extra install; recent stored papers
  lend their words to the IDF weights (``uses_background``).
- ``embedding``: cosine of all-MiniLM-L6-v2 sentence embeddings (``newsletter.matching.embeddings``), with the
  optional ``embeddings`` extra; paper vectors are stored and reused.

Either way the category and keyword rules and ``exclude_keywords`` apply on top
(``newsletter.matching.rules.apply_rules``), and each method has its own threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from newsletter.config import MatchingSettings, TopicSettings
from newsletter.errors import ConfigError
from newsletter.matching.embeddings import INSTALL_HINT, EmbeddingMatcher, MiniLMEncoder, VectorCache, missing_extra
from newsletter.matching.rules import apply_rules, tfidf_similarities, topics_fingerprint
from newsletter.sources.records import Paper, TopicMatch


class Matcher(Protocol):
    """Matches papers to topics; ``similarities`` alone lets `topics evaluate` try many thresholds at once."""

    method: str
    threshold: float
    uses_background: bool
    """Whether ``background`` papers change the result (then `refresh_matches` loads recent ones)."""

    def fingerprint(self, topics: Sequence[TopicSettings]) -> str:
        """Changes when the topics, the threshold or the method change, so stored matches know they are stale."""
        ...

    def similarities(
        self, papers: Sequence[Paper], topics: Sequence[TopicSettings], *, background: Sequence[Paper] = ()
    ) -> np.ndarray:
        """Similarity of each paper (row) to each topic (column), between 0 and 1."""
        ...

    def match(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        threshold: float | None = None,
    ) -> list[TopicMatch]:
        """The matches with their reasons; ``threshold`` overrides the configured one."""
        ...


def match_with(
    matcher: Matcher,
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    *,
    background: Sequence[Paper] = (),
    threshold: float | None = None,
) -> list[TopicMatch]:
    """Similarities of either method, then the shared category/keyword/exclude rules and reasons."""
    if not papers or not topics:
        return []
    similarities = matcher.similarities(papers, topics, background=background)
    return apply_rules(papers, topics, similarities, threshold=matcher.threshold if threshold is None else threshold)


class TfidfMatcher:
    """TF-IDF cosine similarity (``newsletter.matching.rules.match_papers``) as a ``Matcher``."""

    method = "tfidf"
    uses_background = True

    def __init__(self, *, threshold: float) -> None:
        self.threshold = threshold

    def fingerprint(self, topics: Sequence[TopicSettings]) -> str:
        return topics_fingerprint(topics, self.threshold)

    def similarities(
        self, papers: Sequence[Paper], topics: Sequence[TopicSettings], *, background: Sequence[Paper] = ()
    ) -> np.ndarray:
        return tfidf_similarities(papers, topics, background=background)

    def match(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        threshold: float | None = None,
    ) -> list[TopicMatch]:
        return match_with(self, papers, topics, background=background, threshold=threshold)


def build_matcher(
    matching: MatchingSettings, *, cache: VectorCache | None = None, config_path: str | None = None
) -> Matcher:
    """The matcher ``[matching] method`` names; ``cache`` keeps paper embeddings (the `embedding` method).

    Raises ConfigError when `embedding` is chosen and its optional extra is not installed.
    """
    if matching.method == "tfidf":
        return TfidfMatcher(threshold=matching.similarity_threshold)
    missing = missing_extra()
    if missing:
        raise ConfigError(
            f'matching.method: "embedding" needs the optional embeddings extra, which is not installed '
            f"(missing: {', '.join(missing)}); install it with: {INSTALL_HINT}",
            path=config_path,
            key="matching.method",
        )
    encoder = MiniLMEncoder(max_tokens=matching.embedding_max_tokens)
    return EmbeddingMatcher(threshold=matching.embedding_threshold, encoder=encoder, cache=cache)
