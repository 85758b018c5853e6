"""Issue 30: a large rss.arxiv.org listing is read item by item, in memory bounded by the document, into exactly
the papers feedparser gives; any other shape is still read by feedparser."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from newsletter.records.papers import ParsedFeed
from newsletter.sources import parsing
from newsletter.sources.streaming import STREAM_FROM_ITEMS, NotStreamable, arxiv_rss_entries
from tests.conftest import fixture_path

HEAD = b"""<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0">
  <channel>
    <title>cs.AI updates on arXiv.org</title>
    <link>http://rss.arxiv.org/rss/cs.AI</link>
    <description>cs.AI updates on the arXiv.org e-print archive.</description>
    <pubDate>Mon, 27 Apr 2026 00:00:00 -0400</pubDate>
"""
TAIL = b"  </channel>\n</rss>\n"
ABSTRACTS = [
    "Plain text about agents and tools, over\n  two lines.",
    "Markup sent escaped: &lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt; x &lt; y, y &gt; z.",
    "Unicode: Schr\u00f6dinger \u2013 \u03b1-\u03b2 na\u00efve caf\u00e9 \u00e9t\u00e9 \U0001d4d0.",
    "An entity in the text &amp;amp; a &#233; reference and a &#x1F600; one.",
]
TYPES = ["new", "cross", "new", "replace", "replace-cross", "new"]


def _item(n: int) -> bytes:
    kind = TYPES[n % len(TYPES)]
    abstract = ABSTRACTS[n % len(ABSTRACTS)]
    creators = ("<dc:creator>Ada Lovelace, Alan Turing and Grace Hopper</dc:creator>" if n % 3 else
                "<dc:creator>Emmy Noether</dc:creator><dc:creator>Kurt G\u00f6del</dc:creator>")
    day = 20 + n % 7
    return f"""    <item>
      <title>Paper {n}: on \u00abthings\u00bb &amp; more  </title>
      <link>https://arxiv.org/abs/2605.{n:05d}</link>
      <description>arXiv:2605.{n:05d}v{1 + n % 3} Announce Type: {kind}
Abstract: {abstract}</description>
      <guid isPermaLink="false">oai:arXiv.org:2605.{n:05d}v{1 + n % 3}</guid>
      <category>cs.AI</category>
      {"<category>cs.LG</category>" if n % 2 else ""}
      <pubDate>{"Mon" if day == 27 else "Sun"}, {day} Apr 2026 0{n % 10}:00:00 -0400</pubDate>
      <arxiv:announce_type>{kind}</arxiv:announce_type>
      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
      {creators}
    </item>
""".encode()


def _listing(items: int, *, extra: bytes = b"", at: int = -1) -> bytes:
    body = b"".join(_item(n) + (extra if n == at else b"") for n in range(items))
    return HEAD + body + TAIL


def _by_feedparser(data: bytes, monkeypatch: pytest.MonkeyPatch) -> ParsedFeed:
    with monkeypatch.context() as patch:
        patch.setattr(parsing, "STREAM_FROM_ITEMS", 10**9)
        return parsing.parse_feed("arxiv-rss", data, source="cs.AI")


def _streamed_entries(data: bytes) -> int:
    return sum(1 for _ in arxiv_rss_entries(data))


def test_a_large_listing_is_streamed_into_exactly_the_papers_feedparser_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = _listing(STREAM_FROM_ITEMS + 24)
    assert _streamed_entries(data) == STREAM_FROM_ITEMS + 24
    streamed = parsing.parse_feed("arxiv-rss", data, source="cs.AI")
    assert streamed == _by_feedparser(data, monkeypatch)
    assert streamed.skipped == 2 * (STREAM_FROM_ITEMS + 24) // 6  # the replace announcements
    assert len({p.paper_id for p in streamed.papers}) == len(streamed.papers)
    crossless = parsing.parse_feed("arxiv-rss", data, source="cs.AI", include_cross=False)
    with monkeypatch.context() as patch:
        patch.setattr(parsing, "STREAM_FROM_ITEMS", 10**9)
        assert crossless == parsing.parse_feed("arxiv-rss", data, source="cs.AI", include_cross=False)


@pytest.mark.parametrize("name", ["distill_rss_cs.AI_2026-04-27.xml", "distill_rss_cs.CL_2026-04-27.xml",
                                  "distill_rss_cs.LG_2026-04-27.xml",
                                  "allnewsai_rss_cs.CL_weekend_empty_2026-08-01.xml"])
def test_the_real_listings_stream_into_the_same_papers(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = fixture_path(f"arxiv_rss/{name}").read_bytes()
    expected = _by_feedparser(data, monkeypatch)
    monkeypatch.setattr(parsing, "STREAM_FROM_ITEMS", 0)
    assert parsing.parse_feed("arxiv-rss", data, source="cs.AI") == expected


@pytest.mark.parametrize(("old", "new", "why"), [
    (b"</item>", b"<content:encoded xmlns:content='http://purl.org/rss/1.0/modules/content/'>x</content:encoded>"
                 b"</item>", "item element"),
    (b"</item>", b"<title>a second title</title></item>", "title twice"),
    (b"<category>cs.AI</category>", b"<category>cs.<b>AI</b></category>", "child elements"),
])
def test_an_item_of_another_shape_sends_the_whole_listing_to_feedparser(
        old: bytes, new: bytes, why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _listing(STREAM_FROM_ITEMS + 5)
    position = data.index(b"<item>", len(data) // 2)  # half-way: papers were already made when it is found
    data = data[:position] + data[position:].replace(old, new, 1)
    with pytest.raises(NotStreamable, match=why):
        _streamed_entries(data)
    assert parsing.parse_feed("arxiv-rss", data, source="cs.AI") == _by_feedparser(data, monkeypatch)


def test_ill_formed_or_declared_documents_go_to_feedparser(monkeypatch: pytest.MonkeyPatch) -> None:
    ill = _listing(STREAM_FROM_ITEMS + 1).replace(b"&amp; more", b"& more", 1)
    with pytest.raises(NotStreamable, match="not well-formed"):
        _streamed_entries(ill)
    result = parsing.parse_feed("arxiv-rss", ill, source="cs.AI")
    assert result == _by_feedparser(ill, monkeypatch)
    assert result.warnings  # feedparser's "feed has errors" warning, as before
    declared = _listing(STREAM_FROM_ITEMS + 1).replace(b"<rss ", b'<!DOCTYPE rss [<!ENTITY e "x">]>\n<rss ', 1)
    with pytest.raises(NotStreamable, match="document type"):
        _streamed_entries(declared)
    atom = fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml").read_bytes().replace(b'version="2.0"', b"")
    with pytest.raises(NotStreamable, match=r"not RSS 2\.0"):
        _streamed_entries(atom)


def test_memory_is_bounded_by_the_document_not_by_the_items(tmp_path: Path) -> None:
    data = _listing(STREAM_FROM_ITEMS + 100)
    tracemalloc.start()
    try:
        parsed = parsing.parse_feed("arxiv-rss", data, source="cs.AI")
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(parsed.papers) > STREAM_FROM_ITEMS // 2
    # beyond the papers it returns, reading the listing holds a few items at a time: well under the document
    # (feedparser held every entry's dictionary at once: over three times the document's size beyond the papers)
    assert peak - kept < len(data) // 4, (peak - kept, len(data))


def _joined(chunks: list[parsing.FeedChunk]) -> ParsedFeed:
    """The chunks read as `fetch` reads them: a restart drops what came before."""
    papers: list[object] = []
    skipped, warnings = 0, []
    for chunk in chunks:
        if chunk.restart:
            papers, skipped, warnings = [], 0, []
        papers += chunk.papers
        skipped += chunk.skipped
        warnings += chunk.warnings
    return ParsedFeed(tuple(papers), skipped=skipped, warnings=tuple(warnings))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 7, 1000, 10**6])
def test_the_chunks_of_a_document_hold_what_parse_feed_returns(size: int) -> None:
    half_way = _listing(STREAM_FROM_ITEMS + 5)
    position = half_way.index(b"<item>", len(half_way) // 2)
    other_shape = half_way[:position] + half_way[position:].replace(b"</item>", b"<comments>x</comments></item>", 1)
    cases = [
        ("arxiv-rss", _listing(STREAM_FROM_ITEMS + 24)),  # item by item
        ("arxiv-rss", other_shape),  # item by item, then again with feedparser
        ("arxiv-rss", _listing(STREAM_FROM_ITEMS + 1).replace(b"&amp; more", b"& more", 1)),  # ill-formed
        ("arxiv-rss", fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml").read_bytes()),
        ("arxiv-api", fixture_path("arxiv_api/d00ksky_AI_25.xml").read_bytes()),
        ("hf-daily", fixture_path("hf_daily_papers/sotawhat_hf_daily_papers_2026-06-12.json").read_bytes()),
        ("hf-daily", b'[{"paper": {"id": "2604.00001", "title": "A"}}, 3, {"paper": {"id": "x"}}]'),
    ]
    for kind, data in cases:
        chunks = list(parsing.parse_feed_chunks(kind, data, source="cs.AI", size=size))
        assert all(len(chunk.papers) <= size for chunk in chunks)
        assert _joined(chunks) == parsing.parse_feed(kind, data, source="cs.AI"), kind
    restarted = list(parsing.parse_feed_chunks("arxiv-rss", other_shape, source="cs.AI", size=size))
    assert [chunk.restart for chunk in restarted].count(True) == 1  # counts so far are dropped once
