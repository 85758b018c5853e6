"""Relevance first, then trending: the order of the papers within a topic of an edition.

Why: ranking by ``trending score + match strength`` let a heavily upvoted paper that only just matched lead a
section it barely belongs to (trending scores run from about 1 to 6, match strengths from 0.02 to 1.7), and
the top-of-edition block and the preheader then picked it for readers of unrelated topics (issue 24).

The rule: within a topic, the matches of the edition whose strength reaches the topic's median strength in
that edition (or that a keyword or category of the topic claims) form the **relevant tier**; their rank is
raised by ``RELEVANT_TIER``, far above any trending score. Trending then orders papers *within* a tier, and
can never lift a weak match over a strong one. ``is_relevant`` tells the tier from a rank, so the top block
and the subject pick their papers from the relevant tier first.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from newsletter.records.papers import TopicMatch

RELEVANT_TIER = 100.0
"""Added to the rank of a relevant match: above any trending score plus match strength, below a pin."""


def relevant(matches: Sequence[TopicMatch]) -> list[bool]:
    """Per match of one topic (in order): whether it is in the relevant tier (see the module docstring)."""
    if not matches:
        return []
    median = statistics.median(m.strength for m in matches)
    return [m.strength >= median or bool(m.keywords or m.categories) for m in matches]


def tiered_rank(trending: float, match: TopicMatch, *, in_tier: bool) -> float:
    """``trending score + match strength``, raised by ``RELEVANT_TIER`` for a relevant match."""
    return round(trending + match.strength + (RELEVANT_TIER if in_tier else 0.0), 4)


def is_relevant(rank: float) -> bool:
    """Whether a rank (pinned or not) is in the relevant tier."""
    return rank >= RELEVANT_TIER
