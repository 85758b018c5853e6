"""The ``[trending]`` settings: how a paper's trending score weighs its signals and its age."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.config.checks import check_moment, check_non_negative, check_positive
from newsletter.config.declare import setting


@dataclass(frozen=True, kw_only=True)
class TrendingSettings:
    half_life_days: float = setting(3.0, "A paper's score halves every this many days after publication.",
                                    check=check_positive)
    upvote_weight: float = setting(1.0, "Weight of ln(1 + Hugging Face upvotes).", check=check_non_negative)
    star_weight: float = setting(0.5, "Weight of ln(1 + GitHub stars).", check=check_non_negative)
    source_bonus: float = setting(0.5, "Bonus per source beyond the first that carried the paper.",
                                  check=check_non_negative)
    as_of: str = setting("", "Count ages from this ISO date-time instead of now (UTC when no offset is given). For "
                             "replaying old feed snapshots, as `newsletter demo` does; empty in production.",
                         check=check_moment)
