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
from newsletter.matching.calibration import DecisionRule
from newsletter.matching.embeddings import INSTALL_HINT, EmbeddingMatcher, MiniLMEncoder, VectorCache, missing_extra
from newsletter.matching.evidence import Scored, TopicExamples
from newsletter.matching.rules import TFIDF_TERMS, paper_text, tfidf_score, topics_fingerprint
from newsletter.matching.scoring import ScoringMatcher, attach_examples
from newsletter.records.papers import Paper, TopicMatch


class Matcher(Protocol):
    """Matches papers to topics; ``score`` alone lets `topics evaluate` try many decision settings at once."""

    method: str
    threshold: float
    rule: DecisionRule
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

    def score(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        examples: TopicExamples | None = None,
    ) -> Scored:
        """Similarities of the papers and then the background papers, with what each rests on."""
        ...

    def match(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        threshold: float | None = None,
        examples: TopicExamples | None = None,
    ) -> list[TopicMatch]:
        """The matches with their reasons; ``threshold`` switches to the plain threshold rule at that value."""
        ...


class TfidfMatcher(ScoringMatcher):
    """TF-IDF cosine similarity (``newsletter.matching.rules.tfidf_score``) as a ``Matcher``."""

    method = "tfidf"
    uses_background = True

    def __init__(self, *, threshold: float, rule: DecisionRule | None = None) -> None:
        self.threshold = threshold
        self.rule = rule if rule is not None else DecisionRule(calibrated=False, threshold=threshold,
                                                               self_training=False)

    def fingerprint(self, topics: Sequence[TopicSettings]) -> str:
        return f"{topics_fingerprint(topics, self.threshold)}:{self.rule}:{TFIDF_TERMS}"

    def similarities(
        self, papers: Sequence[Paper], topics: Sequence[TopicSettings], *, background: Sequence[Paper] = ()
    ) -> np.ndarray:
        if not papers or not topics:
            return np.zeros((len(papers), len(topics)), dtype=np.float32)
        return self.score(papers, topics, background=background).similarities[: len(papers)]

    def score(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        examples: TopicExamples | None = None,
    ) -> Scored:
        scored, vectorizer = tfidf_score(papers, topics, background=background)
        return attach_examples(scored, topics, examples,
                               lambda chosen: vectorizer.transform([paper_text(p) for p in chosen]))


def decision_rule(matching: MatchingSettings) -> DecisionRule:
    """The ``[matching]`` decision settings of the configured method."""
    tfidf = matching.method == "tfidf"
    return DecisionRule(
        calibrated=matching.decision == "calibrated",
        margin=matching.margin,
        floor=matching.tfidf_floor if tfidf else matching.embedding_floor,
        threshold=matching.similarity_threshold if tfidf else matching.embedding_threshold,
        self_training=matching.self_training,
        background=matching.background != "none",
        background_rank=matching.tfidf_background_rank if tfidf else matching.embedding_background_rank,
        background_margin=matching.tfidf_background_margin if tfidf else matching.embedding_background_margin,
        background_neighbours=0 if tfidf else matching.embedding_background_neighbours,
    )


def build_matcher(
    matching: MatchingSettings, *, cache: VectorCache | None = None, config_path: str | None = None
) -> Matcher:
    """The matcher ``[matching] method`` names; ``cache`` keeps paper embeddings (the `embedding` method).

    Raises ConfigError when `embedding` is chosen and its optional extra is not installed.
    """
    rule = decision_rule(matching)
    if matching.method == "tfidf":
        return TfidfMatcher(threshold=matching.similarity_threshold, rule=rule)
    missing = missing_extra()
    if missing:
        raise ConfigError(
            f'matching.method: "embedding" needs the optional embeddings extra, which is not installed '
            f"(missing: {', '.join(missing)}); install it with: {INSTALL_HINT}",
            path=config_path,
            key="matching.method",
        )
    encoder = MiniLMEncoder(max_tokens=matching.embedding_max_tokens)
    return EmbeddingMatcher(threshold=matching.embedding_threshold, encoder=encoder, cache=cache, rule=rule)
