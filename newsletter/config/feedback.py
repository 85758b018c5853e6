"""The ``[feedback]`` settings: which "more/less like this" votes count, and when they change a topic.

Declared apart from ``settings.py`` (which keeps the other tables) with the same field metadata as its
``setting()``: a default, a help text and a check, read by the loader and ``reference``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from newsletter.config.checks import check_positive


@dataclass(frozen=True, kw_only=True)
class FeedbackSettings:
    link_max_age_days: float = field(default=60.0, metadata={"check": check_positive, "help": (
        "A \"more/less like this\" vote counts only for a paper whose email reached the reader at most this "
        "many days ago; an older link answers 410 and changes nothing.")})
    shared_min_readers: int = field(default=3, metadata={"check": check_positive, "help": (
        "A vote changes a topic's definition for everyone (an extra example or not-example) only when at "
        "least this many more distinct active readers of that topic voted one way on the paper than the other. "
        "Below that, votes only re-rank each voter's own emails.")})
