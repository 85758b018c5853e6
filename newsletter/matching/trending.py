"""The trending score: a small formula anyone can check by hand.

    score = (1 + w_u·ln(1 + upvotes) + w_s·ln(1 + GitHub stars) + bonus·(sources − 1)) × 0.5^(age / half-life)

Age counts from publication (or first sighting) in days. Every score carries the words that explain it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from newsletter.config import TrendingSettings
from newsletter.records.papers import Paper


@dataclass(frozen=True)
class TrendingScore:
    value: float
    base: float
    parts: tuple[tuple[str, float], ...]
    decay: float
    age_days: float

    def explain(self) -> str:
        terms = " + ".join([f"base {self.base:.2f}"] + [f"{label} (+{value:.2f})" for label, value in self.parts])
        total = self.base + sum(v for _, v in self.parts)
        return f"{terms} = {total:.2f}, × {self.decay:.2f} for {self.age_days:.1f} days of age = {self.value:.2f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


@lru_cache(maxsize=8)
def reference_time(as_of: str) -> datetime | None:
    """``[trending] as_of`` as an aware datetime (None when empty: ages count from now)."""
    if not as_of:
        return None
    moment = datetime.fromisoformat(as_of)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def trending_score(paper: Paper, *, now: datetime, settings: TrendingSettings) -> TrendingScore:
    """The score at ``now``, or at ``[trending] as_of`` when that is set (old feeds replayed)."""
    now = reference_time(settings.as_of) or now
    parts: list[tuple[str, float]] = []
    if paper.upvotes:
        parts.append((_plural(paper.upvotes, "upvote"), settings.upvote_weight * math.log1p(paper.upvotes)))
    if paper.github_stars:
        parts.append(
            (_plural(paper.github_stars, "GitHub star"), settings.star_weight * math.log1p(paper.github_stars))
        )
    if len(paper.sources) > 1:
        parts.append((f"carried by {len(paper.sources)} sources", settings.source_bonus * (len(paper.sources) - 1)))
    born = paper.published or paper.first_seen or now
    age_days = max(0.0, (now - born).total_seconds() / 86400)
    decay = 0.5 ** (age_days / settings.half_life_days)
    base = 1.0
    value = (base + sum(v for _, v in parts)) * decay
    return TrendingScore(value=value, base=base, parts=tuple(parts), decay=decay, age_days=age_days)
