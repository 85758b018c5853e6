"""A large rss.arxiv.org listing read item by item (lxml ``iterparse``), in memory bounded by the document.

Why: feedparser builds the whole document's entries at once and is slow per item: a 100,000-item arXiv RSS
listing took 105 s and 795 MB to fetch. This reader walks the document once, hands each item on as the same
plain fields feedparser gives the converters in ``parsing`` (``title``, ``link``, ``summary``, ``id``,
``tags``, ``authors``, ``published_parsed``, ``arxiv_announce_type``), and drops the item before the next,
so the memory is the document's bytes and the papers made, not a tree of it.

It reads only the shape rss.arxiv.org writes (RSS 2.0, items of those elements, well-formed, no DTD). On
anything else — an unknown element in an item, a repeated title, a guid that is a link, an ill-formed
document — it raises ``NotStreamable`` and the caller parses the document with feedparser, as before, so a
feed this reader does not know is never read differently. Dates go through feedparser's own date parser.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import feedparser.datetimes
from lxml import etree

_RSS = "rss"
_ARXIV = "{http://arxiv.org/schemas/atom}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_SINGLE = {"title": "title", "link": "link", "description": "summary", "guid": "id", "pubDate": "published",
           f"{_ARXIV}announce_type": "arxiv_announce_type"}
"""Item elements read once each, and the feedparser key each becomes."""
_IGNORED = frozenset({f"{_DC}rights"})
STREAM_FROM_ITEMS = 2_000
"""Items from which ``parse_feed`` reads an arXiv RSS listing with this reader (smaller ones: feedparser)."""


class NotStreamable(Exception):
    """The document is not the shape this reader knows: parse it with feedparser instead. A signal between
    this module and ``parsing``, never raised past ``parse_feed``, so not a ``NewsletterError``."""


def _parse_date(text: str) -> Any:
    return feedparser.datetimes._parse_date(text)  # feedparser's own parse of pubDate, for the same dates


def _text(element: etree._Element) -> str:
    if len(element):  # markup inside an element: feedparser keeps it as HTML, which this reader does not
        raise NotStreamable("an element with child elements")
    return (element.text or "").strip()


def _entry(item: etree._Element) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    tags: list[dict[str, str]] = []
    authors: list[dict[str, str]] = []
    for child in item:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # a comment or processing instruction: feedparser ignores it too
        if tag in _SINGLE:
            key = _SINGLE[tag]
            if key in entry:
                raise NotStreamable(f"{tag} twice in one item")
            if tag == "guid" and (child.get("isPermaLink") or "true").lower() != "false":
                raise NotStreamable("a guid that is a link")
            entry[key] = _text(child)
        elif tag == "category":
            tags.append({"term": _text(child)})
        elif tag == f"{_DC}creator":
            authors.append({"name": _text(child)})
        elif tag not in _IGNORED:
            raise NotStreamable(f"item element {tag}")
    if "published" in entry:
        entry["published_parsed"] = _parse_date(entry.pop("published"))
    if tags:
        entry["tags"] = tags
    if authors:
        entry["authors"] = authors
    return entry


def arxiv_rss_entries(data: bytes) -> Iterator[dict[str, Any]]:
    """The items of an rss.arxiv.org document as feedparser-shaped entries, one at a time; ``NotStreamable``
    (possibly after some entries) when the document is not that shape."""
    root = data.find(b"<rss")
    if root < 0 or b"<!DOCTYPE" in data[:root].upper():
        raise NotStreamable("no rss element first, or a document type declaration")
    events = etree.iterparse(io.BytesIO(data), events=("start", "end"), resolve_entities=False, no_network=True,
                             load_dtd=False, recover=False, huge_tree=False, remove_comments=True)
    depth = 0
    try:
        for event, element in events:
            if event == "start":
                depth += 1
                if depth == 1 and (element.tag != _RSS or element.get("version") != "2.0"):
                    raise NotStreamable("not RSS 2.0")
                continue
            depth -= 1
            if element.tag == "item" and depth == 2:
                yield _entry(element)
                element.clear(keep_tail=False)
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as error:
        raise NotStreamable(f"not well-formed: {error}") from None
