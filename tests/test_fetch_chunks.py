"""Issue 30: `fetch` parses, stores and matches a large listing a chunk at a time, with the counts and matches
of doing it at once, and a fetch that stops half-way leaves no stored paper unmatched: the next one matches it.

The listing is rss.arxiv.org's shape with the texts of the real papers of ``tests/fixtures``; every test runs on
SQLite and on the PostgreSQL server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from newsletter.config import Settings, load_settings
from newsletter.matching import pending, refresh
from newsletter.matching.matcher import build_matcher
from newsletter.records.papers import SourceReport, TopicMatch
from newsletter.sources import parsing
from newsletter.sources.streaming import STREAM_FROM_ITEMS
from newsletter.storage.db import open_database
from newsletter.storage.papers import PaperStore
from newsletter.usecases import fetch as fetching
from tests.conftest import write_config
from tests.test_matching_chunks import PAPERS

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)
ITEMS = STREAM_FROM_ITEMS + 150
"""Enough items for the item-by-item reader (with a replacement every 25th, skipped)."""

pytestmark = pytest.mark.usefixtures("database_url")


def _item(n: int, *, duplicate_of: int | None = None) -> str:
    paper = PAPERS[n % len(PAPERS)]
    number = n if duplicate_of is None else duplicate_of
    kind = "replace" if n % 25 == 7 else "new"
    categories = "".join(f"<category>{escape(c)}</category>" for c in paper.categories[:3]) or \
        "<category>cs.AI</category>"
    return (f"<item><title>{escape(paper.title)} ({n})</title><link>https://arxiv.org/abs/2605.{number:05d}</link>"
            f"<description>arXiv:2605.{number:05d}v1 Announce Type: {kind}\nAbstract: {escape(paper.abstract)}"
            f"</description><guid isPermaLink=\"false\">oai:arXiv.org:2605.{number:05d}v1</guid>{categories}"
            f"<pubDate>Mon, 27 Apr 2026 00:00:00 -0400</pubDate><arxiv:announce_type>{kind}</arxiv:announce_type>"
            f"<dc:creator>{escape(', '.join(paper.authors) or 'A. Author')}</dc:creator></item>\n")


def _listing(items: int = ITEMS, *, tail: str = "") -> bytes:
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:arxiv="http://arxiv.org/schemas/atom" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel><title>cs.AI updates</title>'
            "<link>http://rss.arxiv.org/rss/cs.AI</link><description>cs.AI</description>\n")
    return (head + "".join(_item(n) for n in range(items)) + tail + "</channel></rss>\n").encode()


def _settings(folder: Path, data: bytes) -> Settings:
    (folder / "feed.xml").write_bytes(data)
    return load_settings(write_config(folder, [("cs-ai", "arxiv-rss", str(folder / "feed.xml"))],
                                      extra="max_bytes = 50000000\n"))


def _fetch(settings: Settings, store: PaperStore, now: datetime = NOW) -> SourceReport:
    return asyncio.run(fetching.fetch_sources(settings, store, now=now))[0]


def _whole(settings: Settings, data: bytes) -> tuple[tuple[int, int, int, int], list[TopicMatch]]:
    """What the fetch must give: the listing parsed whole and every paper matched at once."""
    parsed = parsing.parse_feed("arxiv-rss", data, source="cs-ai")
    matches = build_matcher(settings.matching).match(parsed.papers, settings.topics)
    ids = {p.paper_id for p in parsed.papers}
    return (len(parsed.papers) + parsed.skipped, len(ids), parsed.skipped, len(parsed.warnings)), matches


def _stored(store: PaperStore) -> list[TopicMatch]:
    return sorted(store.matches(), key=lambda m: (m.paper_id, m.topic))


def _counts(report: SourceReport) -> tuple[int, int, int, int]:
    return report.fetched, report.new, report.skipped, len(report.warnings)


def test_a_large_listing_is_stored_and_matched_by_chunks_as_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _listing()
    settings = _settings(tmp_path, data)
    counts, matches = _whole(settings, data)
    store = PaperStore(open_database(settings.newsletter.database_url))
    chunks: list[int] = []
    upsert = PaperStore.upsert
    monkeypatch.setattr(PaperStore, "upsert", lambda self, papers, **kw: (chunks.append(len(papers)),
                                                                           upsert(self, papers, **kw))[1])
    monkeypatch.setattr(fetching, "FETCH_CHUNK", 300)
    monkeypatch.setattr(refresh, "MATCH_CHUNK", 500)
    report = _fetch(settings, store)
    assert max(chunks) == 300
    assert len(chunks) > 5
    assert _counts(report) == counts
    assert report.updated == 0
    assert not report.errors
    assert _stored(store) == sorted(matches, key=lambda m: (m.paper_id, m.topic))
    assert store.get_meta(pending.PENDING_KEY) is None
    again = _fetch(settings, store, NOW + timedelta(hours=1))
    assert (again.new, again.updated) == (0, 0)


def test_a_reader_restart_half_way_and_a_paper_twice_count_as_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the last item repeats the first paper (the same id, a newer title): one paper, stored once, counted once;
    # an element the item-by-item reader does not know, near the end, sends the listing to feedparser after
    # chunks were stored
    odd = _item(ITEMS, duplicate_of=0).replace("</item>", "<comments>x</comments></item>")
    data = _listing(tail=odd)
    settings = _settings(tmp_path, data)
    counts, _ = _whole(settings, data)
    store = PaperStore(open_database(settings.newsletter.database_url))
    monkeypatch.setattr(fetching, "FETCH_CHUNK", 400)
    report = _fetch(settings, store)
    assert _counts(report) == counts
    assert report.updated == 0
    assert store.get("2605.00000").title.endswith(f"({ITEMS})")  # type: ignore[union-attr]
    # the papers as stored (the two items of 2605.00000 merged), in the listing's order, matched at once
    order = dict.fromkeys(p.paper_id for p in parsing.parse_feed("arxiv-rss", data, source="cs-ai").papers)
    found = store.get_many(list(order))
    matches = build_matcher(settings.matching).match([found[i] for i in order], settings.topics)
    assert _stored(store) == sorted(matches, key=lambda m: (m.paper_id, m.topic))


def test_a_fetch_stopped_during_the_matching_leaves_the_rest_to_the_next_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _listing()
    settings = _settings(tmp_path, data)
    _, matches = _whole(settings, data)
    store = PaperStore(open_database(settings.newsletter.database_url))
    monkeypatch.setattr(refresh, "MATCH_CHUNK", 500)
    replace = PaperStore.replace_matches
    calls = {"n": 0}

    def crash_on_the_third_chunk(self: PaperStore, ids: list[str], found: list[TopicMatch]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the operator's ^C, or the process killed: nothing after it runs
        replace(self, ids, found)

    monkeypatch.setattr(PaperStore, "replace_matches", crash_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        _fetch(settings, store)
    monkeypatch.setattr(PaperStore, "replace_matches", replace)
    assert 0 < len(_stored(store)) < len(matches)
    assert store.get_meta(pending.PENDING_KEY) is not None
    again = _fetch(settings, store, NOW + timedelta(hours=1))  # the listing has not changed: no paper is new
    assert (again.new, again.updated) == (0, 0)
    assert _stored(store) == sorted(matches, key=lambda m: (m.paper_id, m.topic))
    assert store.get_meta(pending.PENDING_KEY) is None


def test_a_fetch_stopped_while_storing_leaves_its_stored_papers_to_the_next_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _listing()
    settings = _settings(tmp_path, data)
    store = PaperStore(open_database(settings.newsletter.database_url))
    monkeypatch.setattr(fetching, "FETCH_CHUNK", 500)
    upsert = PaperStore.upsert
    calls = {"n": 0}

    def stop_on_the_third_chunk(self: PaperStore, papers: list[object], **kw: datetime) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return upsert(self, papers, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(PaperStore, "upsert", stop_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        _fetch(settings, store)
    monkeypatch.setattr(PaperStore, "upsert", upsert)
    stored = store.count_papers()
    assert stored == 1000
    assert not store.matches()
    # the next run of any matching step (here a fetch of nothing new: an empty listing) matches them
    (tmp_path / "feed.xml").write_bytes(_listing(0))
    _fetch(settings, store, NOW + timedelta(hours=1))
    papers = store.papers()
    expected = build_matcher(settings.matching).match(papers, settings.topics)
    assert len(papers) == stored
    assert expected
    assert _stored(store) == sorted(expected, key=lambda m: (m.paper_id, m.topic))
