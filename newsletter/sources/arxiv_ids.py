"""arXiv identifiers: find them in links and GUIDs, split off the version.

New style ``2604.21952v2`` (4 digits, dot, 4–5 digits) and old style ``astro-ph/0601001v1`` or
``math.GT/0309136`` (archive, optional subject class, slash, 7 digits). Digits are ASCII only (an
Arabic-Indic ``٢٦٠٤`` is not an id), and a version of more than 4 of them (``v`` and thousands of digits)
is no version: the id stands alone.
"""

from __future__ import annotations

import re

_ID = r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d+))?"
_IN_TEXT = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf|html)/|arXiv:|oai:arXiv\.org:|huggingface\.co/papers/)" + _ID, re.ASCII
)
_BARE = re.compile(_ID, re.ASCII)
MAX_VERSION_DIGITS = 4


def split_arxiv_id(value: str) -> tuple[str, int | None] | None:
    """``'2604.21952v2'`` → ``('2604.21952', 2)``; a link or GUID containing an id works too; else None."""
    value = value.strip()
    match = _BARE.fullmatch(value) or _IN_TEXT.search(value)
    if match is None:
        return None
    version = match.group("version")
    return match.group("id"), int(version) if version and len(version) <= MAX_VERSION_DIGITS else None


def abs_url(paper_id: str) -> str:
    return f"https://arxiv.org/abs/{paper_id}"


def pdf_url(paper_id: str) -> str:
    return f"https://arxiv.org/pdf/{paper_id}"


def hf_url(paper_id: str) -> str:
    return f"https://huggingface.co/papers/{paper_id}"
