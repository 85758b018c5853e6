"""What every matching method is: similarities of papers to topics, then the shared rules and reasons.

Kept apart from the factory in ``newsletter.matching.matcher`` so that each method's module can use it
without importing the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from newsletter.config import TopicSettings
from newsletter.matching.rules import apply_rules
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
