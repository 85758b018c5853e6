"""The ``[feedback]`` settings: which "more/less like this" votes count, and when they change a topic."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.config.checks import check_positive
from newsletter.config.declare import setting


@dataclass(frozen=True, kw_only=True)
class FeedbackSettings:
    link_max_age_days: float = setting(
        60.0, "A \"more/less like this\" vote counts only for a paper whose email reached the reader at most this "
        "many days ago; an older link answers 410 and changes nothing.", check=check_positive,
    )
    shared_min_readers: int = setting(
        3, "A vote changes a topic's definition for everyone (an extra example or not-example) only when at "
        "least this many more distinct active readers of that topic voted one way on the paper than the other. "
        "Below that, votes only re-rank each voter's own emails.", check=check_positive,
    )
