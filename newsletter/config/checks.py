"""The value checks of the settings: each returns what was expected when a value is wrong, None when it is fine.

Kept apart from the declarations (``newsletter.config.settings``) so that file reads as the reference it is.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from datetime import datetime

from newsletter.config.cron import cron_field_problem

SUBJECT_FIELDS = ("name", "count", "topics", "date", "frequency", "top", "lead", "weekly")


def check_timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone name such as 'UTC' or 'Europe/Berlin'"
    return None


def check_email(value: str) -> str | None:
    if re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
        return None
    return "an e-mail address such as 'papers@example.org'"


def check_http_url(value: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return None
    return "an http(s) URL such as 'https://papers.example.org'"


def check_slug(value: str) -> str | None:
    if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", value):
        return None
    return "a slug of lowercase letters, digits and '-' (e.g. 'efficient-training')"


def check_positive(value: float) -> str | None:
    return None if value > 0 else "a number greater than 0"


def check_non_negative(value: float) -> str | None:
    return None if value >= 0 else "a number of 0 or more"


def check_unit_interval(value: float) -> str | None:
    return None if 0 <= value <= 1 else "a number between 0 and 1"


def check_moment(value: str) -> str | None:
    if not value:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return "an ISO date or date-time such as '2026-06-12' or '2026-06-12T18:00:00+00:00', or empty"
    return None


def check_non_empty(value: str) -> str | None:
    return None if value.strip() else "a non-empty string"


def check_max_tokens(value: int) -> str | None:
    return None if 16 <= value <= 256 else "an integer from 16 to 256 (the model reads at most 256 tokens)"


def _relative_luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    light, dark = sorted((_relative_luminance(first), _relative_luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def check_accent(value: str) -> str | None:
    """The accent colours text and buttons on white, so it must meet WCAG AA (4.5:1) there."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return "a colour written #rrggbb, such as '#1d4ed8'"
    if contrast_ratio(value, "#ffffff") < 4.5:
        ratio = contrast_ratio(value, "#ffffff")
        return f"a colour dark enough for text on white (contrast {ratio:.2f}:1, needs 4.5:1)"
    return None


def check_optional_http_url(value: str) -> str | None:
    return None if not value or re.fullmatch(r"https?://\S+", value) else "an http(s) URL, or \"\" for none"


def check_subject(value: str) -> str | None:
    unknown = [f for f in re.findall(r"\{([^{}]*)\}", value) if f not in SUBJECT_FIELDS]
    if value.strip() and not unknown:
        return None
    return "a subject with only the fields " + ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)


def check_cron(value: str) -> str | None:
    """A crontab line with day names (5 fields, or 6 with seconds first), or "" to disable the job."""
    if not value.strip():
        return None
    fields = value.split()
    expected = "a cron expression such as '0 7 * * mon-fri' (or \"\" to disable)"
    if len(fields) not in (5, 6):
        return expected
    if re.search(r"\d", fields[-1]):
        return "day names in the day-of-week field (mon-fri, sat,sun): cron dialects disagree on day numbers"
    problem = cron_field_problem(fields)
    return f"{expected} ({problem})" if problem else None


def check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "an IP address or CIDR network such as '127.0.0.1/32' or '10.0.0.0/8'"
    return None


def broker_problem(value: str) -> str | None:
    if not value or re.fullmatch(r"(redis|rediss|amqp|amqps|pyamqp)://\S*", value):
        return None
    return "a Redis or RabbitMQ URL such as 'redis://127.0.0.1:6379/0' or 'amqp://guest:guest@127.0.0.1:5672//'"


def check_queue_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", value) else "a queue name of letters, digits and _.:-"


def check_domain(value: str) -> str | None:
    if not value or re.fullmatch(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", value.lower()):
        return None
    return "a domain name such as 'bounces.example.org', or empty to turn inbound mail off"
