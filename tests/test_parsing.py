"""Each source kind parsed from real feed files; hostile input comes out as inert plain text."""

from __future__ import annotations

import resource
import time
from datetime import UTC, datetime

import pytest

from newsletter.errors import SourceError
from newsletter.sources.parsing import parse_feed
from tests.conftest import fixture_path


def read(relative: str) -> bytes:
    return fixture_path(relative).read_bytes()


def test_arxiv_rss_strips_the_preamble_and_keeps_the_announce_type() -> None:
    parsed = parse_feed("arxiv-rss", read("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml"), source="cs.AI")
    assert [p.paper_id for p in parsed.papers] == ["2604.21935", "2604.21936", "2604.21937"]
    paper = parsed.papers[0]
    assert paper.version == 1
    assert paper.title == "Math Takes Two: A test for emergent mathematical reasoning in communication"
    assert paper.abstract.startswith("Although language models demonstrate remarkable proficiency")
    assert "Announce Type" not in paper.abstract
    assert "arXiv:" not in paper.abstract
    assert paper.announce_type == "new"
    assert paper.authors == ("Michael Cooper", "Samuel Cooper")
    assert paper.categories == ("cs.AI", "cs.LG")
    assert paper.primary_category == "cs.AI"
    assert paper.abs_url == "https://arxiv.org/abs/2604.21935"
    assert paper.pdf_url == "https://arxiv.org/pdf/2604.21935"
    assert paper.published == datetime(2026, 4, 27, 4, 0, tzinfo=UTC)
    assert paper.sources == ("cs.AI",)
    assert len(parsed.papers[1].authors) == 18


def test_arxiv_rss_skips_replacements_and_optionally_cross_lists() -> None:
    data = read("derived/arxiv_rss_cs.AI_announce_types.xml")
    with_cross = parse_feed("arxiv-rss", data, source="s")
    assert [(p.paper_id, p.announce_type) for p in with_cross.papers] == [
        ("2604.21935", "new"),
        ("2604.21936", "cross"),
    ]
    assert with_cross.skipped == 1
    without_cross = parse_feed("arxiv-rss", data, source="s", include_cross=False)
    assert [p.paper_id for p in without_cross.papers] == ["2604.21935"]
    assert without_cross.skipped == 2


def test_empty_weekend_feed_is_not_an_error() -> None:
    parsed = parse_feed("arxiv-rss", read("arxiv_rss/allnewsai_rss_cs.CL_weekend_empty_2026-08-01.xml"), source="s")
    assert parsed.papers == ()
    assert parsed.skipped == 0
    assert parsed.warnings == ()


@pytest.mark.parametrize(
    ("name", "paper_id", "primary"),
    [
        ("arxivpy_2016_au_del_maestro.xml", "1201.4869", "cond-mat.mes-hall"),  # old shape, category with scheme
        ("d00ksky_AI_25.xml", "2501.02842", "cs.IR"),  # current shape, no scheme
        ("arxivpy_2026_id_astro-ph_0601001.xml", "astro-ph/0601001", "astro-ph"),  # old-style identifier
    ],
)
def test_arxiv_api_both_primary_category_shapes(name: str, paper_id: str, primary: str) -> None:
    parsed = parse_feed("arxiv-api", read(f"arxiv_api/{name}"), source="api")
    paper = parsed.papers[0]
    assert paper.paper_id == paper_id
    assert paper.version == 1
    assert paper.primary_category == primary
    assert paper.abs_url == f"https://arxiv.org/abs/{paper_id}"


def test_arxiv_api_collapses_wrapped_text() -> None:
    paper = parse_feed("arxiv-api", read("arxiv_api/arxivpy_2016_id_list_1111.2011v2.xml"), source="api").papers[0]
    assert paper.paper_id == "1111.2011"
    assert paper.version == 2
    assert paper.title == "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit"
    assert "\n" not in paper.abstract
    assert "  " not in paper.abstract


def test_hf_daily_json_keeps_every_signal() -> None:
    parsed = parse_feed("hf-daily", read("hf_daily_papers/sotawhat_hf_daily_papers_2026-06-12.json"), source="hf")
    assert len(parsed.papers) == 30
    with_code = [p for p in parsed.papers if p.code_url]
    assert with_code, "the capture has papers with a GitHub repository"
    paper = next(p for p in parsed.papers if p.code_url == "https://github.com/YujunZhou/tellonce")
    assert paper.github_stars is not None
    first = parsed.papers[0]
    assert first.paper_id == "2606.00467"
    assert first.upvotes == 0
    assert first.hf_url == "https://huggingface.co/papers/2606.00467"
    assert first.thumbnail_url == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2606.00467.png"
    assert first.ai_summary
    assert first.ai_summary.startswith("Large language models exhibit limited ability")
    assert "decision stickiness" in first.ai_keywords
    assert first.authors == ("Etienne Casanova", "Rafal Kocielnik", "R. Michael Alvarez")
    assert any(p.project_url for p in parsed.papers)


def test_hf_daily_rejects_what_is_not_a_list_of_papers() -> None:
    with pytest.raises(SourceError, match="source 'hf': expected a JSON array of papers, found dict"):
        parse_feed("hf-daily", b'{"error": "rate limited"}', source="hf")
    with pytest.raises(SourceError, match="source 'hf': not JSON"):
        parse_feed("hf-daily", b"<rss>", source="hf")
    with pytest.raises(SourceError, match="source 'hf': expected JSON, got an HTML page"):
        parse_feed("hf-daily", b"<html>", source="hf")


def test_generic_rss_recognises_arxiv_links_and_strips_markup() -> None:
    parsed = parse_feed("rss", read("hf_daily_papers/brevio_hf_papers_feedgen_rss_2026-04-30.xml"), source="hf-rss")
    paper = parsed.papers[0]
    assert paper.paper_id == "2604.21003"
    assert paper.title == "The Last Harness You'll Ever Build"
    assert "<" not in paper.abstract
    assert "Paper thumbnail" not in paper.abstract
    assert paper.abstract.startswith("Authors: Haebin Seong")


HOSTILE = [
    "encoding_bozo_bogus_encoding.xml",
    "encoding_bozo_encoding_mismatch_crash.xml",
    "encoding_bozo_linenoise.xml",
    "illformed_aaa_illformed.xml",
    "illformed_chardet_big5.xml",
    "illformed_chardet_shiftjis.xml",
    "illformed_http_high_bit_date.xml",
    "illformed_rss_incomplete_cdata.xml",
    "illformed_undeclared_namespace.xml",
    "wellformed_rss_entity_in_doctype.xml",
    "wellformed_sanitize_item_description_iframe.xml",
    "wellformed_sanitize_item_description_onerror.xml",
    "wellformed_sanitize_item_description_style.xml",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_feeds_never_crash_and_never_yield_markup(name: str) -> None:
    parsed = parse_feed("rss", read(f"hostile/{name}"), source="hostile")
    for paper in parsed.papers:
        for text in (paper.title, paper.abstract, *paper.authors):
            assert "<" not in text
            assert "onerror" not in text


def test_broken_feed_keeps_its_entries_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    data = read("hostile/illformed_chardet_shiftjis.xml")
    data = data.replace(b"<title>", b"<id>https://blog.example/1</id><title>", 1)  # give the entry a key
    parsed = parse_feed("rss", data, source="sjis")
    assert parsed.papers
    assert parsed.papers[0].title.startswith("DrecomRSS")
    assert parsed.warnings
    assert parsed.warnings[0].startswith("feed has errors, kept 1 entries")
    assert "source 'sjis': feed has errors" in caplog.text


def test_script_and_event_handlers_become_inert_text() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
    <item><title>&lt;script&gt;alert(1)&lt;/script&gt;Attention {{ config }} {% if x %}</title>
    <link>https://arxiv.org/abs/2604.00001</link>
    <description>&lt;img src=x onerror="alert(1)"&gt;Real &lt;b&gt;bold&lt;/b&gt; abstract &amp;amp; more</description>
    </item></channel></rss>"""
    paper = parse_feed("rss", feed, source="s").papers[0]
    assert paper.title == "Attention {{ config }} {% if x %}"
    assert paper.abstract == "Real bold abstract & more"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
]>
<rss version="2.0"><channel><title>t</title>
<item><title>Laughs &g;</title><link>https://arxiv.org/abs/2604.00002</link><description>d</description></item>
<item><title>Survivor</title><link>https://arxiv.org/abs/2604.00003</link><description>fine</description></item>
</channel></rss>"""


def test_entity_expansion_does_not_hang_or_exhaust_memory() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    parsed = parse_feed("arxiv-rss", BILLION_LAUGHS, source="bomb")
    assert time.monotonic() - started < 5
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000  # the expansion would be 80 × 20^6 bytes ≈ 5 GB
    assert all(len(p.title) < 1000 for p in parsed.papers)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "/etc/hostname"])
def test_external_entities_are_never_read(target: str) -> None:
    feed = f"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{target}">]>
<rss version="2.0"><channel><title>t</title>
<item><title>Leak &xxe; here</title><link>https://arxiv.org/abs/2604.00004</link>
<description>&xxe;</description></item></channel></rss>""".encode()
    parsed = parse_feed("rss", feed, source="xxe")
    secret = open("/etc/passwd", encoding="utf-8").read()  # noqa: SIM115 - a short read in a test
    for paper in parsed.papers:
        assert "root:" not in paper.title + paper.abstract
        assert secret[:20] not in paper.title + paper.abstract


def test_garbage_is_reported_as_not_a_feed() -> None:
    with pytest.raises(SourceError, match="source 'junk': not a feed"):
        parse_feed("rss", b"\x00\x01 this is not xml at all <<<", source="junk")
