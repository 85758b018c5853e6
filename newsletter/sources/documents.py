"""Whole-document checks before a parser sees the bytes: is it a feed at all, and within what budget?

Why: an empty body or an HTML error page used to count as a successful fetch of 0 entries, hiding a broken
source; JSON nested 100,000 deep blew Python's recursion limit; and feedparser is quadratic in the number of
attributes of one element and of categories of one item (50,000 attributes, 490 KB, took 165 s), so a few
MB, far below the size cap, could stall a fetch for hours. These checks are linear (lxml, a regex scan) and
turn each case into a SourceError or a trimmed document with a warning; docs/pipeline.md lists the limits.
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING, Any

from newsletter.errors import SourceError

if TYPE_CHECKING:
    from lxml import etree

MAX_JSON_DEPTH = 64
MAX_ATTRIBUTES = 64
"""Attributes kept per XML element; a feed element needs a handful."""
MAX_SAME_CHILDREN = 256
"""Child elements of one name kept per XML element (categories, authors), not counting items and entries."""
MAX_CHILDREN = 8 * MAX_SAME_CHILDREN
"""Child elements kept per XML element in all, items and entries again not counted (a feed may list 10,000s)."""
_ENTRY_TAGS = frozenset({"item", "entry", "li"})
"""Never dropped: items, entries, and the ``rdf:li`` list of an RSS 1.0 channel."""
_LONG_TAG = re.compile(rb"<[^<>]{%d,}>" % (5 * MAX_ATTRIBUTES))
"""A tag long enough to hold more than MAX_ATTRIBUTES attributes (each at least ` a=""`)."""
_ENTRY_START = re.compile(rb"<(?:\w+:)?(?:item|entry)[\s>/]")

_LEADING_NOISE = re.compile(rb"^(?:\xef\xbb\xbf|\s|<\?xml[^>]*\?>|<!--.*?-->)*", re.DOTALL)
_HTML_START = re.compile(rb"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]+")


def expect_feed(kind: str, data: bytes, *, source: str, content_type: str | None = None) -> None:
    """Raise SourceError when the body is empty or an HTML page where a feed of ``kind`` was expected."""
    expected = "JSON" if kind == "hf-daily" else "RSS/Atom"
    start = _LEADING_NOISE.match(data)
    head = data[start.end() if start else 0:][:256]
    if not head.strip():
        raise SourceError(source, f"expected {expected}, got an empty body")
    if _HTML_START.match(head):
        media_type = content_type.split(";")[0].strip() if content_type else ""
        got = f"{media_type} (an HTML page)" if media_type else "an HTML page"
        raise SourceError(source, f"expected {expected}, got {got}")


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in ``data``, in one linear scan (strings cannot fool it)."""
    depth = deepest = 0
    for run in _BRACKETS.finditer(_JSON_STRING.sub(b'""', data)):
        for byte in run.group():
            depth += 1 if byte in b"[{" else -1
            deepest = max(deepest, depth)
    return deepest


def _bounded_int(digits: str) -> int | None:
    """A JSON integer of up to 20 digits; a longer one is no count, and Python refuses to read one of more
    than 4,300 digits at all, which would lose the whole document rather than one field."""
    return int(digits) if len(digits) <= 20 else None


def load_json(data: bytes, *, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` instead of recursing away, and
    reads integers of more than 20 digits as null."""
    if json_depth(data) > max_depth:
        raise SourceError(source, f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_int=_bounded_int)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(source, f"not JSON: {exc}") from None


def _local(tag: object) -> str:
    return tag.rpartition("}")[2].lower() if isinstance(tag, str) else ""


def _may_be_over_budget(data: bytes) -> bool:
    """A quick byte scan, no parser: False when no tag is long enough for too many attributes and no stretch
    between two items holds enough tags for too many children. Real feeds stop here; lxml is not loaded."""
    if _LONG_TAG.search(data):
        return True
    start = 0
    for match in _ENTRY_START.finditer(data):
        if data.count(b"<", start, match.start()) > MAX_SAME_CHILDREN:
            return True
        start = match.start()
    return data.count(b"<", start) > MAX_SAME_CHILDREN


def _over_budget(data: bytes) -> bool:
    """Whether any element breaks the budget, found in one streaming pass that drops each item or entry
    once read, so a 20 MB listing costs no more memory than one item."""
    if not _may_be_over_budget(data):
        return False
    from lxml import etree  # only for the rare document the byte scan could not clear

    events = etree.iterparse(io.BytesIO(data), events=("end",), resolve_entities=False, no_network=True,
                             load_dtd=False, recover=True, huge_tree=False)
    try:
        for _, element in events:
            if len(element.attrib) > MAX_ATTRIBUTES:
                return True
            if len(element) > MAX_SAME_CHILDREN and _trim_children(element, dry_run=True):
                return True
            if _local(element.tag) in _ENTRY_TAGS:
                element.clear(keep_tail=True)
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError:
        return False  # nothing lxml can measure: feedparser's own loose parser gets it as it is
    return False


def _trim_children(element: etree._Element, *, dry_run: bool = False) -> int:
    """Drop children past MAX_SAME_CHILDREN of their name, then past MAX_CHILDREN in all; keep the first ones
    (a title or date after 20,000 categories survives). Items and entries are never dropped."""
    seen: dict[str, int] = {}
    kept = dropped = 0
    for child in list(element):
        name = _local(child.tag)
        if name in _ENTRY_TAGS:
            continue
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > MAX_SAME_CHILDREN or kept >= MAX_CHILDREN:
            if dry_run:
                return 1
            element.remove(child)
            dropped += 1
        else:
            kept += 1
    return dropped


def bound_xml(data: bytes) -> tuple[bytes, str | None]:
    """The document with elements past the budget removed, and a warning saying what went; unchanged
    (the same bytes, no warning) when it is within budget, which is every real feed.

    lxml parses without resolving entities or touching the network, in recover mode so ill-formed feeds
    are measured too; a document lxml cannot read at all is left to feedparser unchanged. Only a document
    over budget is read into a tree.
    """
    if not _over_budget(data):
        return data, None
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=True,
                             remove_comments=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except (etree.XMLSyntaxError, ValueError):
        return data, None
    if root is None:
        return data, None
    attributes = children = 0
    for element in list(root.iter(etree.Element)):
        if len(element.attrib) > MAX_ATTRIBUTES:
            # lxml's items() and deleting names one by one are both quadratic; keys() and get() are not
            kept = [(name, element.get(name, "")) for name in element.keys()[:MAX_ATTRIBUTES]]
            attributes += len(element.attrib) - MAX_ATTRIBUTES
            element.attrib.clear()
            for name, value in kept:
                element.set(name, value)
        if len(element) > MAX_SAME_CHILDREN:
            children += _trim_children(element)
    if not attributes and not children:
        return data, None
    trimmed = etree.tostring(root.getroottree(), encoding="utf-8", xml_declaration=True)
    parts = []
    if attributes:
        parts.append(f"{attributes} attributes beyond {MAX_ATTRIBUTES} per element")
    if children:
        parts.append(f"{children} child elements beyond {MAX_SAME_CHILDREN} of a name per element")
    return trimmed, "dropped " + " and ".join(parts)
