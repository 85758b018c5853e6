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

import numpy as np

from newsletter.config import MatchingSettings, TopicSettings
from newsletter.errors import ConfigError
from newsletter.matching.base import Matcher, match_with
from newsletter.matching.embeddings import INSTALL_HINT, EmbeddingMatcher, MiniLMEncoder, VectorCache, missing_extra
from newsletter.matching.rules import tfidf_similarities, topics_fingerprint
from newsletter.sources.records import Paper, TopicMatch


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
