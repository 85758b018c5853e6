"""Feed bytes to papers: pure functions, no I/O, so tests feed real files.

One parser per source kind; feedparser reads the XML, except a large rss.arxiv.org listing, which
``streaming`` reads item by item into the same entry fields (feedparser again for any other shape). A feed
with errors keeps whatever entries it yields, with a warning. Every text field goes through
``html_to_text``: feed markup is never trusted.
Before a parser runs, ``documents`` checks the body is a feed and within budget; after, ``sanitize`` bounds
every field of every paper. An entry that still breaks a rule is skipped and counted, never its neighbours.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.errors import SourceError
from newsletter.records.papers import Paper, ParsedFeed
from newsletter.records.text import collapse_whitespace, html_to_text
from newsletter.sources import arxiv_ids
from newsletter.sources.documents import bound_xml, expect_feed, load_json
from newsletter.sources.sanitize import cap, clean_text, normalise_paper
from newsletter.sources.streaming import STREAM_FROM_ITEMS, NotStreamable, arxiv_rss_entries

log = logging.getLogger(__name__)

_RSS_PREAMBLE = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:)?\s*", re.IGNORECASE
)
SKIPPED_ANNOUNCE_TYPES = frozenset({"replace", "replace-cross"})


def parse_feed(
    kind: str, data: bytes, *, source: str, include_cross: bool = True, content_type: str | None = None
) -> ParsedFeed:
    """Dispatch on the source kind; raise SourceError when the bytes are not a feed of that kind at all.

    ``content_type`` (the server's header, when there was one) only makes the error for an HTML page clearer.
    """
    if kind not in ("hf-daily", "arxiv-rss", "arxiv-api", "rss"):
        raise SourceError(source, f"unknown source kind {kind!r}")
    expect_feed(kind, data, source=source, content_type=content_type)
    if kind == "hf-daily":
        return parse_hf_daily(data, source=source)
    data, trimmed = bound_xml(data)
    streamed = _streamed(data, source, include_cross) if kind == "arxiv-rss" else None
    parsed = _feedparse(data, source=source) if streamed is None else None
    if streamed is not None:
        feed = streamed
    elif kind == "arxiv-rss":
        feed = _collect(parsed, source, lambda e: _arxiv_rss_entry(e, source, include_cross))
    elif kind == "arxiv-api":
        feed = _collect(parsed, source, lambda e: _arxiv_api_entry(e, source))
    else:
        feed = _collect(parsed, source, lambda e: _rss_entry(e, source))
    if trimmed:
        log.warning("source %r: %s", source, trimmed)
        feed = dataclasses.replace(feed, warnings=(trimmed, *feed.warnings))
    return feed


@dataclass(frozen=True)
class FeedChunk:
    """Consecutive papers of one document, with the entries skipped among them and warnings.

    ``restart``: the document is being read again from its start (the item-by-item reader met a shape it does not
    know and feedparser reads it instead), so the counts and warnings of the chunks before no longer hold; their
    papers, read the same way by both readers, may come again."""

    papers: tuple[Paper, ...]
    skipped: int = 0
    warnings: tuple[str, ...] = ()
    restart: bool = False


def parse_feed_chunks(
    kind: str, data: bytes, *, source: str, include_cross: bool = True, content_type: str | None = None,
    size: int = 5000,
) -> Iterator[FeedChunk]:
    """``parse_feed`` a chunk of at most ``size`` papers at a time; together, the chunks hold what it returns.

    A large arXiv RSS listing is read item by item (``streaming``), so its papers are never all held at once; a
    Hugging Face listing is decoded whole, then its items are made papers (and let go) a chunk at a time; any
    other document is parsed whole, as by ``parse_feed``, and handed on in chunks. Raises what ``parse_feed``
    raises, before the first chunk.
    """
    if kind == "hf-daily":
        expect_feed(kind, data, source=source, content_type=content_type)
        yield from _hf_chunks(data, source=source, size=size)
        return
    if kind != "arxiv-rss":
        yield from _in_chunks(parse_feed(kind, data, source=source, include_cross=include_cross,
                                         content_type=content_type), size)
        return
    expect_feed(kind, data, source=source, content_type=content_type)
    data, trimmed = bound_xml(data)
    if trimmed:
        log.warning("source %r: %s", source, trimmed)
    first = (trimmed,) if trimmed else ()
    restart = False
    if data.count(b"<item", 0, None) >= STREAM_FROM_ITEMS:
        entries = arxiv_rss_entries(data)
        try:
            for papers, skipped, broken, last in _convert_entries(
                    entries, source, lambda e: _arxiv_rss_entry(e, source, include_cross), size):
                warnings = (*first, *((_broken_warning(broken),) if last and broken else ()))
                yield FeedChunk(tuple(papers), skipped=skipped, warnings=warnings)
                first = ()
            return
        except NotStreamable as why:
            log.info("source %r: read with feedparser (%s)", source, _said(why))
            first, restart = (trimmed,) if trimmed else (), True
    feed = _collect(_feedparse(data, source=source), source, lambda e: _arxiv_rss_entry(e, source, include_cross))
    yield from _in_chunks(dataclasses.replace(feed, warnings=(*first, *feed.warnings)), size, restart=restart)


def _in_chunks(feed: ParsedFeed, size: int, *, restart: bool = False) -> Iterator[FeedChunk]:
    """A parsed document as chunks: its skipped count and warnings on the first."""
    for start in range(0, max(len(feed.papers), 1), size):
        first = start == 0
        yield FeedChunk(feed.papers[start : start + size], skipped=feed.skipped if first else 0,
                        warnings=feed.warnings if first else (), restart=restart and first)


_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


def _valid_char_ref(match: re.Match[bytes]) -> bytes:
    """A numeric character reference as is when it names a character XML allows, else U+FFFD's:
    feedparser's fallback parser raises on ``&#x110000;`` and ``&#xD800;`` and loses the whole feed."""
    hex_digits, decimal = match.groups()
    digits = hex_digits or decimal
    if len(digits) > 8:
        return b"&#xFFFD;"
    code = int(digits, 16 if hex_digits else 10)
    if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF:
        return match.group()
    return b"&#xFFFD;"


def _said(exception: object) -> str:
    """A parser's complaint, which quotes the feed (its declared encoding, a line), as one clean short line."""
    return cap(clean_text(str(exception or "")), 300)


def _feedparse(data: bytes, *, source: str) -> Any:
    if b"&#" in data:
        data = _CHAR_REF.sub(_valid_char_ref, data)
    try:
        parsed = feedparser.parse(data, resolve_relative_uris=False)
    except (ValueError, OverflowError, LookupError, RecursionError) as exc:  # feedparser's own bugs
        raise SourceError(source, f"feedparser failed: {type(exc).__name__}: {_said(exc)}") from None
    if not parsed.entries and not parsed.get("version"):
        reason = _said(parsed.get("bozo_exception")) or "no RSS or Atom elements"
        raise SourceError(source, f"not a feed: {reason}")
    return parsed


_COLUMN_LIMITS = {"paper_id": 300, "primary_category": 64, "announce_type": 32}
"""Lengths of the store's columns: SQLite would keep a longer value, PostgreSQL refuses the whole batch."""


def _storable(paper: Paper) -> Paper:
    """The paper as every database can hold it: no NUL characters (PostgreSQL text refuses them), and no
    value longer than its column. A long id (a link) keeps its start and gains a hash of the whole, so it
    stays unique and the same on every fetch; a long category or announce type is cut."""
    paper = normalise_paper(paper)
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(paper):
        value = getattr(paper, field.name)
        if isinstance(value, str) and "\x00" in value:
            value = changes[field.name] = value.replace("\x00", "")
        elif isinstance(value, tuple) and any(isinstance(v, str) and "\x00" in v for v in value):
            value = changes[field.name] = tuple(v.replace("\x00", "") for v in value)
        limit = _COLUMN_LIMITS.get(field.name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            if field.name == "paper_id":
                digest = hashlib.sha256(value.encode()).hexdigest()[:16]
                changes[field.name] = f"{value[: limit - 17]}#{digest}"
            else:
                changes[field.name] = value[:limit]
    return dataclasses.replace(paper, **changes) if changes else paper


def _streamed(data: bytes, source: str, include_cross: bool) -> ParsedFeed | None:
    """A large arXiv RSS listing read item by item (``streaming``); None when it is small or not of the shape
    that reader knows, for feedparser to read."""
    if data.count(b"<item", 0, None) < STREAM_FROM_ITEMS:
        return None
    try:
        return _collect_entries(arxiv_rss_entries(data), source, lambda e: _arxiv_rss_entry(e, source, include_cross),
                                warnings=[])
    except NotStreamable as why:
        log.info("source %r: read with feedparser (%s)", source, _said(why))
        return None


def _collect(parsed: Any, source: str, convert: Callable[[Any], Paper | None]) -> ParsedFeed:
    warnings: list[str] = []
    if parsed.bozo:
        warning = f"feed has errors, kept {len(parsed.entries)} entries: {_said(parsed.get('bozo_exception'))}"
        log.warning("source %r: %s", source, warning)
        warnings.append(warning)
    return _collect_entries(parsed.entries, source, convert, warnings=warnings)


def _collect_entries(entries: Iterable[Mapping[str, Any]], source: str, convert: Callable[[Any], Paper | None], *,
                     warnings: list[str]) -> ParsedFeed:
    papers, skipped, broken, _ = next(_convert_entries(entries, source, convert, None))
    if broken:
        warnings.append(_broken_warning(broken))
    return ParsedFeed(tuple(papers), skipped=skipped, warnings=tuple(warnings))


def _convert_entries(entries: Iterable[Mapping[str, Any]], source: str, convert: Callable[[Any], Paper | None],
                     size: int | None) -> Iterator[tuple[list[Paper], int, int, bool]]:
    """Papers of the entries, ``size`` at a time (None: all at once), as (papers, entries skipped among them,
    malformed entries since the start, whether it is the last chunk)."""
    papers: list[Paper] = []
    skipped = broken = 0
    for entry in entries:
        try:
            paper = convert(entry)
            if paper is not None:
                paper = _storable(paper)
        except _ENTRY_ERRORS as exc:
            log.info("source %r: skipped an entry: %s: %s", source, type(exc).__name__, _said(exc))
            paper = None
            broken += 1
        if paper is None:
            skipped += 1
        else:
            papers.append(paper)
            if size is not None and len(papers) >= size:
                yield papers, skipped, broken, False
                papers, skipped = [], 0
    yield papers, skipped, broken, True


_ENTRY_ERRORS = (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError, RecursionError)
"""What a malformed entry can raise in its converter; it costs that entry only."""


def _broken_warning(count: int) -> str:
    return f"skipped {count} malformed entr{'y' if count == 1 else 'ies'} (fields of the wrong type or range)"


def _time(entry: Mapping[str, Any], *keys: str) -> datetime | None:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, time.struct_time):
            try:
                return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, OSError):  # year 1, year 9999 + offset: no usable date
                return None
    return None


def _split_authors(value: str) -> tuple[str, ...]:
    names = re.split(r",\s*|\s+and\s+", html_to_text(value))
    return tuple(name for name in (n.strip() for n in names) if name)


def _entry_authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    authors = entry.get("authors") or []
    names = [html_to_text(a.get("name")) for a in authors if isinstance(a, Mapping)]
    if len(names) == 1 and "," in names[0]:
        return _split_authors(names[0])
    return tuple(n for n in names if n)


def _tags(entry: Mapping[str, Any]) -> tuple[str, ...]:
    terms = (collapse_whitespace(str(t.get("term") or "")) for t in entry.get("tags") or [])
    return tuple(dict.fromkeys(t for t in terms if t))


def _arxiv_rss_entry(entry: Mapping[str, Any], source: str, include_cross: bool) -> Paper | None:
    summary = entry.get("summary") or ""
    preamble = _RSS_PREAMBLE.match(summary)
    announce_type = str(entry.get("arxiv_announce_type") or (preamble and preamble.group("type")) or "new")
    announce_type = announce_type.lower()
    if announce_type in SKIPPED_ANNOUNCE_TYPES or (announce_type == "cross" and not include_cross):
        return None
    ids = None
    for candidate in (preamble.group("id") if preamble else "", entry.get("id"), entry.get("link")):
        ids = arxiv_ids.split_arxiv_id(str(candidate or ""))
        if ids:
            break
    title = html_to_text(entry.get("title"))
    if ids is None or not title:
        return None
    paper_id, version = ids
    abstract = summary[preamble.end():] if preamble else summary
    categories = _tags(entry)
    return Paper(
        paper_id=paper_id,
        version=version,
        title=title,
        authors=_entry_authors(entry),
        abstract=html_to_text(abstract),
        categories=categories,
        primary_category=categories[0] if categories else None,
        abs_url=arxiv_ids.abs_url(paper_id),
        pdf_url=arxiv_ids.pdf_url(paper_id),
        published=_time(entry, "published_parsed", "updated_parsed"),
        announce_type=announce_type,
        sources=(source,),
    )


def _arxiv_api_entry(entry: Mapping[str, Any], source: str) -> Paper | None:
    ids = arxiv_ids.split_arxiv_id(str(entry.get("id") or entry.get("link") or ""))
    title = html_to_text(entry.get("title"))
    if ids is None or not title:
        return None
    paper_id, version = ids
    categories = _tags(entry)
    primary = entry.get("arxiv_primary_category")
    primary_term = primary.get("term") if isinstance(primary, Mapping) else None
    return Paper(
        paper_id=paper_id,
        version=version,
        title=title,
        authors=_entry_authors(entry),
        abstract=html_to_text(entry.get("summary")),
        categories=categories,
        primary_category=str(primary_term) if primary_term else (categories[0] if categories else None),
        abs_url=arxiv_ids.abs_url(paper_id),
        pdf_url=arxiv_ids.pdf_url(paper_id),
        published=_time(entry, "published_parsed", "updated_parsed"),
        sources=(source,),
    )


def _rss_entry(entry: Mapping[str, Any], source: str) -> Paper | None:
    link = str(entry.get("link") or "").strip()
    title = html_to_text(entry.get("title"))
    key = link or str(entry.get("id") or "").strip()
    if not title or not key:
        return None
    ids = arxiv_ids.split_arxiv_id(key)
    if ids:
        paper_id, version = ids
        abs_link: str | None = arxiv_ids.abs_url(paper_id)
        pdf_link: str | None = arxiv_ids.pdf_url(paper_id)
    else:
        paper_id, version, abs_link, pdf_link = key, None, link or None, None
    categories = _tags(entry)
    return Paper(
        paper_id=paper_id,
        version=version,
        title=title,
        authors=_entry_authors(entry),
        abstract=html_to_text(entry.get("summary")),
        categories=categories,
        abs_url=abs_link,
        pdf_url=pdf_link,
        published=_time(entry, "published_parsed", "updated_parsed"),
        sources=(source,),
    )


# --- Hugging Face daily papers (JSON) ---------------------------------------------------------------------


def parse_hf_daily(data: bytes, *, source: str) -> ParsedFeed:
    papers: list[Paper] = []
    skipped = 0
    warnings: tuple[str, ...] = ()
    for chunk in _hf_chunks(data, source=source, size=None):
        papers += chunk.papers
        skipped += chunk.skipped
        warnings += chunk.warnings
    return ParsedFeed(tuple(papers), skipped=skipped, warnings=warnings)


def _hf_chunks(data: bytes, *, source: str, size: int | None) -> Iterator[FeedChunk]:
    """The papers of a Hugging Face listing, ``size`` papers at a time (None: all at once); each item is let
    go once read, so the document's objects and its papers are not all held together."""
    items = load_json(data, source=source)
    if not isinstance(items, list):
        raise SourceError(source, f"expected a JSON array of papers, found {type(items).__name__}")

    def convert(item: Any) -> Paper | None:
        return _hf_item(item, source) if isinstance(item, dict) else None

    for papers, skipped, broken, last in _convert_entries(_let_go(items), source, convert, size):
        yield FeedChunk(tuple(papers), skipped=skipped,
                        warnings=(_broken_warning(broken),) if broken and last else ())


def _let_go(items: list[Any]) -> Iterator[Any]:
    """The items in order, each dropped from the list as it is handed out, so a read item can be freed."""
    items.reverse()
    while items:
        yield items.pop()


def _hf_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # sanitize.bounded_date checks the range


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _raw_str(value: Any) -> str:
    """A JSON string as is; any other type (int, bool, list, object) counts as missing, not as text."""
    return value if isinstance(value, str) else ""


def _str(value: Any) -> str | None:
    text = html_to_text(value) if isinstance(value, str) else ""
    return text or None


def _url(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and re.match(r"https?://\S+$", value.strip()) else None


def _strings(values: Any) -> Iterable[str]:
    return (html_to_text(v) for v in values if isinstance(v, str)) if isinstance(values, list) else ()


def _hf_item(item: dict[str, Any], source: str) -> Paper | None:
    nested = item.get("paper")
    paper: dict[str, Any] = nested if isinstance(nested, dict) else item
    ids = arxiv_ids.split_arxiv_id(_raw_str(paper.get("id")))
    title = html_to_text(_raw_str(paper.get("title")) or _raw_str(item.get("title")))
    if ids is None or not title:
        return None
    paper_id, version = ids
    listed = paper.get("authors")
    authors: list[Any] = listed if isinstance(listed, list) else []
    names = [_str(a.get("name")) for a in authors if isinstance(a, dict) and not a.get("hidden")]
    return Paper(
        paper_id=paper_id,
        version=version,
        title=title,
        authors=tuple(n for n in names if n),
        abstract=html_to_text(_raw_str(paper.get("summary")) or _raw_str(item.get("summary"))),
        abs_url=arxiv_ids.abs_url(paper_id),
        pdf_url=arxiv_ids.pdf_url(paper_id),
        hf_url=arxiv_ids.hf_url(paper_id),
        code_url=_url(paper.get("githubRepo")),
        project_url=_url(paper.get("projectPage")),
        thumbnail_url=_url(item.get("thumbnail") or paper.get("thumbnail")),
        ai_summary=_str(paper.get("ai_summary")),
        ai_keywords=tuple(k for k in _strings(paper.get("ai_keywords")) if k),
        published=_hf_time(paper.get("publishedAt") or item.get("publishedAt")),
        upvotes=_int(paper.get("upvotes")),
        github_stars=_int(paper.get("githubStars")),
        sources=(source,),
    )
