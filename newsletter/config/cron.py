"""Checking a cron line while the config loads, without importing the scheduler.

The grammar is the subset of APScheduler's cron fields the docs promise: ``*``, ``*/N``, ``A``, ``A-B``,
``A-B/N`` and comma lists, with month and day names, plus ``last`` and ``1st mon``-style day expressions.
`newsletter serve` builds the real trigger from the same line (``newsletter.service.triggers``).
"""

from __future__ import annotations

import re

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FIELDS = (  # name, lowest, highest, names
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day_of_week", 0, 6, _DAYS),
)
_RANGE = re.compile(r"(?P<start>\*|\w+)(?:-(?P<end>\w+))?(?:/(?P<step>\d+))?")
_DAY_EXPRESSION = re.compile(rf"last|(?:1st|2nd|3rd|4th|5th|last) (?:{'|'.join(_DAYS)})")


def cron_field_problem(fields: list[str]) -> str | None:
    """What is wrong with 5 crontab fields (or 6, seconds first), or None when APScheduler will accept them."""
    spec = _FIELDS if len(fields) == 6 else _FIELDS[1:]
    for (name, lowest, highest, names), text in zip(spec, fields, strict=True):
        for part in text.lower().split(","):
            if name == "day" and _DAY_EXPRESSION.fullmatch(part):
                continue
            match = _RANGE.fullmatch(part)
            if match is None:
                return f"unrecognised expression {part!r} in the {name} field"
            for value in (match["start"], match["end"]):
                if value is None or value == "*":
                    continue
                number = names.index(value) + (lowest if name == "month" else 0) if value in names else None
                if number is None and not value.isdigit():
                    return f"unrecognised value {value!r} in the {name} field"
                number = int(value) if number is None else number
                if not lowest <= number <= highest:
                    return f"the {name} field takes {lowest}-{highest}, found {number}"
            if match["step"] is not None and int(match["step"]) == 0:
                return f"a step of 0 in the {name} field"
    return None
