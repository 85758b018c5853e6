"""A reader's personal fields: the placeholders a variant is rendered with, and the values that replace them.

Kept apart from ``render`` and ``context`` (Jinja, Premailer, the edition's records): a sending process needs
only these, once per message, and starts in a fraction of the time without the rest (``delivery.child``).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from newsletter.records.text import collapse_whitespace
from newsletter.rendering.links import Recipient

PERSONAL_FIELDS = ("name", "greeting", "email", "manage_url", "unsubscribe_url", "view_url", "feedback_url",
                   "feed_url")
TITLES = frozenset({"dr", "prof", "mr", "mrs", "ms", "mx", "sir", "dame"})
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
"""What ``safe_url`` leaves as it is besides letters, digits and ``_.-~`` (``quote``'s always-safe characters)."""
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9_.\-~" + re.escape(_URL_SAFE) + r"]*",
                        re.IGNORECASE | re.ASCII)
"""An http(s) URL ``quote`` would return unchanged: every link a send makes (a base URL and a token). ASCII
case rules only: Unicode ones would let "K" (the Kelvin sign) pass for a "k" that ``quote`` encodes."""


def placeholder_prefix(nonce: str) -> str:
    return f"__nl{nonce}_"


def placeholder(nonce: str, name: str) -> str:
    """Letters, digits and ``_`` only: HTML escaping, URL escaping and Premailer leave it as it is."""
    return f"{placeholder_prefix(nonce)}{name}__"


def placeholder_pattern(nonce: str) -> re.Pattern[str]:
    """Finds the placeholders of one render; the group ``name`` is the personal field."""
    return re.compile(rf"{re.escape(placeholder_prefix(nonce))}(?P<name>[a-z]+(?:_[a-z]+)*)__")


def safe_url(url: str | None) -> str | None:
    """http(s) URLs only, with characters that could leave an attribute percent-encoded."""
    if not url:
        return None
    if _PLAIN_URL.fullmatch(url):  # nothing to strip or encode (5 links per message of a send)
        return url
    url = url.strip()
    if not re.match(r"https?://", url, re.IGNORECASE):
        return None
    return quote(url, safe=_URL_SAFE)


def personal_values(recipient: Recipient) -> dict[str, str]:
    """The raw values of the personal fields (one line each; links http(s) only)."""
    name = collapse_whitespace(recipient.name)
    first = first_name(name)
    return {
        "name": name,
        "greeting": f"Hi {first}," if first else "Hello,",
        "email": collapse_whitespace(recipient.email),
        "manage_url": safe_url(recipient.manage_url) or "",
        "unsubscribe_url": safe_url(recipient.unsubscribe_url) or "",
        "view_url": safe_url(recipient.view_url) or "",
        "feedback_url": safe_url(recipient.feedback_url) or "",
        "feed_url": safe_url(recipient.feed_url) or "",
    }


def first_name(name: str) -> str:
    """The word a greeting uses ("Ada" of "Ada Lovelace"; "" for an address-like or empty name): a full
    name reads like a form letter."""
    words = [w for w in name.split() if w.rstrip(".").lower() not in TITLES]
    if not words or "@" in words[0]:
        return ""
    return words[0].rstrip(",")
