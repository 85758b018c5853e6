"""Bounds on every value a feed hands us, applied once at parse time so nothing downstream needs to care.

Why: feeds are written by strangers. A lone surrogate stored from JSON breaks every later `papers --json`,
`preview` and `send`; a bidi override or a C0 control survives into the email; a 129 KB title pushes
every other paper out of the size budget; an integer of 2^63 overflows PostgreSQL's BIGINT; a date in
year 1 or 9999 with an offset overflows ``datetime`` as soon as someone converts it. Each rule here makes
such a value harmless (cleaned, capped, or dropped) and the limits are listed in docs/pipeline.md.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from newsletter.records.papers import Paper
from newsletter.records.text import collapse_whitespace

MAX_TITLE_CHARS = 500
MAX_ABSTRACT_CHARS = 10_000
MAX_AI_SUMMARY_CHARS = 2_000
MAX_AUTHORS = 100
MAX_AUTHOR_CHARS = 200
MAX_CATEGORIES = 32
MAX_CATEGORY_CHARS = 64
MAX_KEYWORDS = 32
MAX_KEYWORD_CHARS = 100
MAX_URL_CHARS = 2_000
MAX_VERSION = 10_000
MAX_COUNT = 2**31 - 1
"""Upvotes and stars above this are not real counts; they are dropped (PostgreSQL's INTEGER bound)."""
EARLIEST_DATE = datetime(1991, 1, 1, tzinfo=UTC)
"""arXiv opened in August 1991: a paper published earlier is a broken date, dropped."""
LATEST_DATE = datetime(2200, 1, 1, tzinfo=UTC)
MAX_VALIDATOR_CHARS = 512
ELLIPSIS = "…"

# C0 controls except tab and newline, DEL, C1 controls; lone surrogates; bidi embeddings, overrides and
# isolates (U+202A–U+202E, U+2066–U+2069), which can reorder the text around them in an email or a terminal.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_VALIDATOR = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def clean_text(value: str) -> str:
    """NFC-normalised text with the characters listed above removed (they carry no meaning in a paper)."""
    if value.isascii():
        return _UNSAFE.sub("", value) if _UNSAFE.search(value) else value
    value = _UNSAFE.sub("", value)  # surrogates first: NFC cannot encode them
    return unicodedata.normalize("NFC", value)


def cap(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary with an ellipsis when it was longer."""
    if len(text) <= limit:
        return text
    cut = text[: limit].rsplit(" ", 1)[0].rstrip(" ,;:.")
    if len(cut) < limit // 2:  # one enormous word: cut inside it
        cut = text[: limit - 1]
    return cut[: limit - 1] + ELLIPSIS


def bounded_int(value: int | None, *, maximum: int) -> int | None:
    """A count or version within 0..maximum; anything else is not data and becomes None."""
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= maximum else None


def bounded_date(value: datetime | None) -> datetime | None:
    """The date in UTC when it lies in [1991, 2200); None when it is outside or cannot be converted."""
    if value is None:
        return None
    try:
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        return None
    return value if EARLIEST_DATE <= value < LATEST_DATE else None


def safe_validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth replaying: printable ASCII, short; anything else is forgotten.

    A server's non-ASCII Last-Modified, replayed as If-Modified-Since, makes every later request of the
    source fail before it is sent, so such a value is never stored nor sent.
    """
    if value is None or len(value) > MAX_VALIDATOR_CHARS or not _VALIDATOR.fullmatch(value):
        return None
    return value


def _texts(values: tuple[str, ...], *, count: int, chars: int) -> tuple[str, ...]:
    cleaned = (cap(collapse_whitespace(clean_text(v)), chars) for v in values[:count])
    return tuple(v for v in cleaned if v)


_TEXT_CAPS = {"title": MAX_TITLE_CHARS, "abstract": MAX_ABSTRACT_CHARS, "ai_summary": MAX_AI_SUMMARY_CHARS}
_URL_FIELDS = ("abs_url", "pdf_url", "hf_url", "code_url", "project_url", "thumbnail_url")


def normalise_paper(paper: Paper) -> Paper:
    """Every text field cleaned and capped, counts and versions bounded, dates in range (or dropped).

    Raises ValueError when nothing of the title or the id is left: the parser skips and counts that entry.
    """
    changes: dict[str, Any] = {}
    for name, limit in _TEXT_CAPS.items():
        value = getattr(paper, name)
        if value:
            changes[name] = cap(collapse_whitespace(clean_text(value)), limit)
    if not changes.get("title"):
        raise ValueError("no title left once control characters are removed")
    changes["authors"] = _texts(paper.authors, count=MAX_AUTHORS, chars=MAX_AUTHOR_CHARS)
    if len(paper.authors) > MAX_AUTHORS:
        changes["authors"] += (f"{ELLIPSIS} ({len(paper.authors) - MAX_AUTHORS} more)",)
    changes["categories"] = _texts(paper.categories, count=MAX_CATEGORIES, chars=MAX_CATEGORY_CHARS)
    changes["ai_keywords"] = _texts(paper.ai_keywords, count=MAX_KEYWORDS, chars=MAX_KEYWORD_CHARS)
    changes["paper_id"] = clean_text(paper.paper_id)
    if not changes["paper_id"]:
        raise ValueError("no id left once control characters are removed")
    for name in ("primary_category", "announce_type"):
        value = getattr(paper, name)
        if value is not None:
            changes[name] = clean_text(value) or None
    for name in _URL_FIELDS:
        url = getattr(paper, name)
        if url is not None and (len(url) > MAX_URL_CHARS or clean_text(url) != url):
            changes[name] = None
    changes["version"] = bounded_int(paper.version, maximum=MAX_VERSION)
    changes["upvotes"] = bounded_int(paper.upvotes, maximum=MAX_COUNT)
    changes["github_stars"] = bounded_int(paper.github_stars, maximum=MAX_COUNT)
    changes["published"] = bounded_date(paper.published)
    return dataclasses.replace(paper, **changes)
