"""What both matching methods share once the similarities are computed: examples, decision rule, reasons.

Why a module of its own: TF-IDF (``matcher.TfidfMatcher``) and embeddings (``embeddings.EmbeddingMatcher``)
differ only in ``score``; everything after it — blending in example papers, self-training, the calibrated or
threshold rule, the category/keyword/exclude rules — lives here, below both, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from newsletter.config import TopicSettings
from newsletter.matching.background import score_open_world
from newsletter.matching.calibration import DecisionRule, ExampleEvidence, decide, dense, self_train, with_examples
from newsletter.matching.evidence import Scored, TopicExamples
from newsletter.matching.rules import apply_rules
from newsletter.records.papers import Paper, TopicMatch


def attach_examples(
    scored: Scored,
    topics: Sequence[TopicSettings],
    examples: TopicExamples | None,
    featurise: Callable[[Sequence[Paper]], Any],
) -> Scored:
    """``scored`` with each topic's example and not-example papers blended in (``calibration.with_examples``)."""
    if not examples or not any(examples.get(t.slug, ((), ()))[0] or examples.get(t.slug, ((), ()))[1]
                               for t in topics):
        return scored
    pairs = [examples.get(t.slug, ((), ())) for t in topics]
    positive = [featurise(list(pos)) if pos else None for pos, _ in pairs]
    negative = [featurise(list(neg)) if neg else None for _, neg in pairs]
    blended, closest = with_examples(scored.similarities, scored.features, ExampleEvidence(positive, negative))
    closer = np.zeros(blended.shape, dtype=bool)
    for column, vectors in enumerate(positive):
        if vectors is not None:
            closer[:, column] = dense(scored.features @ vectors.T).max(axis=1) >= scored.similarities[:, column]
    return Scored(similarities=blended, features=scored.features, facets=scored.facets,
                  closest_facet=scored.closest_facet, examples=[list(pos) for pos, _ in pairs],
                  closest_example=closest, example_closer=closer)


def learned_similarities(rule: DecisionRule, scored: Scored) -> np.ndarray:
    """The similarities after self-training on the corpus (when the rule asks for it)."""
    return self_train(scored.similarities, scored.features) if rule.self_training else scored.similarities


def decide_matches(
    rule: DecisionRule,
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    scored: Scored,
    *,
    similarities: np.ndarray | None = None,
    threshold: float | None = None,
    floor: float | None = None,
    beats: np.ndarray | None = None,
) -> list[TopicMatch]:
    """Matches of the first ``len(papers)`` rows of ``scored``; the other rows are the calibration corpus.

    ``similarities`` (learned, all rows) saves recomputing self-training when several settings are tried;
    ``threshold`` switches to the plain threshold rule; ``floor`` overrides the rule's floor. ``beats`` (rows ×
    topics, from ``background.score_open_world``) keeps the calibrated rule to the topics that beat the
    background: a paper that none beats matches nothing ("none of these").
    """
    learned = learned_similarities(rule, scored) if similarities is None else similarities
    count = len(papers)
    if threshold is not None or not rule.calibrated:
        limit = rule.threshold if threshold is None else threshold
        selected = learned[:count] >= limit
    else:
        selected = decide(learned, margin=rule.margin, floor=rule.floor if floor is None else floor)[:count]
        if beats is not None:
            selected &= beats[:count]
    return apply_rules(papers, topics, learned[:count], selected=selected, scored=scored)


def match_with(
    matcher: ScoringMatcher,
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    *,
    background: Sequence[Paper] = (),
    threshold: float | None = None,
    examples: TopicExamples | None = None,
) -> list[TopicMatch]:
    """Scores of either method, the decision rule, then the shared category/keyword/exclude rules and reasons."""
    if not papers or not topics:
        return []
    scored, beats = score_open_world(matcher, papers, topics, background=background, examples=examples,
                                     calibrated=threshold is None)
    return decide_matches(matcher.rule, papers, topics, scored, threshold=threshold, beats=beats)


class ScoringMatcher:
    """The shared half of a matcher: ``match`` is the subclass's ``score`` followed by ``match_with``."""

    rule: DecisionRule

    def score(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        examples: TopicExamples | None = None,
    ) -> Scored:
        raise NotImplementedError

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
        return match_with(self, papers, topics, background=background, threshold=threshold, examples=examples)
