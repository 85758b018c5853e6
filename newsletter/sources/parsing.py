"""Feed bytes to papers: pure functions, no I/O, so tests feed real files.

One parser per source kind; feedparser reads all the XML. A feed with errors keeps whatever entries it
yields, with a warning. Every text field goes through ``html_to_text``: feed markup is never trusted.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.errors import SourceError
from newsletter.sources import arxiv_ids
from newsletter.sources.records import Paper, ParsedFeed
from newsletter.sources.text import collapse_whitespace, html_to_text

log = logging.getLogger(__name__)

_RSS_PREAMBLE = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:)?\s*", re.IGNORECASE
)
SKIPPED_ANNOUNCE_TYPES = frozenset({"replace", "replace-cross"})


def parse_feed(kind: str, data: bytes, *, source: str, include_cross: bool = True) -> ParsedFeed:
    """Dispatch on the source kind; raise SourceError when the bytes are not a feed of that kind at all."""
    if kind == "hf-daily":
        return parse_hf_daily(data, source=source)
    parsed = _feedparse(data, source=source)
    if kind == "arxiv-rss":
        return _collect(parsed, source, lambda e: _arxiv_rss_entry(e, source, include_cross))
    if kind == "arxiv-api":
        return _collect(parsed, source, lambda e: _arxiv_api_entry(e, source))
    if kind == "rss":
        return _collect(parsed, source, lambda e: _rss_entry(e, source))
    raise SourceError(source, f"unknown source kind {kind!r}")


def _feedparse(data: bytes, *, source: str) -> Any:
    parsed = feedparser.parse(data, resolve_relative_uris=False)
    if parsed.bozo and not parsed.entries and not parsed.get("version"):
        raise SourceError(source, f"not a feed: {parsed.get('bozo_exception')}")
    return parsed


_COLUMN_LIMITS = {"paper_id": 300, "primary_category": 64, "announce_type": 32}
"""Lengths of the store's columns: SQLite would keep a longer value, PostgreSQL refuses the whole batch."""


def _storable(paper: Paper) -> Paper:
    """The paper as every database can hold it: no NUL characters (PostgreSQL text refuses them), and no
    value longer than its column. A long id (a link) keeps its start and gains a hash of the whole, so it
    stays unique and the same on every fetch; a long category or announce type is cut."""
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


def _collect(parsed: Any, source: str, convert: Callable[[Any], Paper | None]) -> ParsedFeed:
    warnings: list[str] = []
    if parsed.bozo:
        warning = f"feed has errors, kept {len(parsed.entries)} entries: {parsed.get('bozo_exception')}"
        log.warning("source %r: %s", source, warning)
        warnings.append(warning)
    papers: list[Paper] = []
    skipped = 0
    for entry in parsed.entries:
        paper = convert(entry)
        if paper is None:
            skipped += 1
        else:
            papers.append(_storable(paper))
    return ParsedFeed(tuple(papers), skipped=skipped, warnings=tuple(warnings))


def _time(entry: Mapping[str, Any], *keys: str) -> datetime | None:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, time.struct_time):
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
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
    try:
        items = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(source, f"not JSON: {exc}") from None
    if not isinstance(items, list):
        raise SourceError(source, f"expected a JSON array of papers, found {type(items).__name__}")
    papers: list[Paper] = []
    skipped = 0
    for item in items:
        paper = _hf_item(item, source) if isinstance(item, dict) else None
        if paper is None:
            skipped += 1
        else:
            papers.append(_storable(paper))
    return ParsedFeed(tuple(papers), skipped=skipped)


def _hf_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


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
    ids = arxiv_ids.split_arxiv_id(str(paper.get("id") or ""))
    title = html_to_text(paper.get("title") or item.get("title") or "")
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
        abstract=html_to_text(paper.get("summary") or item.get("summary") or ""),
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
