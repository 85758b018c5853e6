"""Feed text to plain text: nothing a feed sends is ever kept as markup."""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser

_SKIPPED_ELEMENTS = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe", "object"})
_BREAKING_ELEMENTS = frozenset({"br", "p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6"})
MAX_AUTHORS = 4
"""Authors an email or a feed entry names before "et al."."""


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping += 1
        elif tag in _BREAKING_ELEMENTS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BREAKING_ELEMENTS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace to one space, trimmed. ``str.split()`` splits on exactly the characters ``\\s``
    matches (both are ``str.isspace``) and is several times faster than the regular expression on an abstract."""
    return " ".join(text.split())


def html_to_text(value: str | None) -> str:
    """Strip tags and decode entities; a fast path keeps plain text (most arXiv abstracts) cheap."""
    if not value:
        return ""
    if "<" not in value and "&" not in value:
        return collapse_whitespace(value)
    collector = _TextCollector()
    collector.feed(value)
    collector.close()
    return collapse_whitespace("".join(collector.parts))


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary and add an ellipsis; never cut a word in half."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return (cut or text[:limit]) + "…"


def short_authors(authors: Sequence[str]) -> str:
    if len(authors) <= MAX_AUTHORS:
        return ", ".join(authors)
    return f"{', '.join(authors[: MAX_AUTHORS - 1])} et al. ({len(authors)} authors)"
