"""The corpus of hostile and broken feeds in tests/fixtures/broken/: one generated file per class of input
that once crashed, hung or misled `fetch` (issue 15). Regenerate the files with

    python -m tests.broken_feeds

Every case is a document of a source kind plus what `fetch` must make of it: ``error`` is the one-line
reason the source must fail with, or None when the document is accepted with its bad parts made harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

FOLDER = Path(__file__).parent / "fixtures" / "broken"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    error: str | None
    """Start of the source's error reason; None: the source succeeds."""
    papers: int = 0
    """Papers the source must yield when it succeeds."""


CASES = (
    Case("rss_date_year_1.xml", "arxiv-rss", None, papers=1),
    Case("api_date_extremes.xml", "arxiv-api", None, papers=2),
    Case("hf_date_extremes.json", "hf-daily", None, papers=2),
    Case("rss_version_5000_digits.xml", "arxiv-rss", None, papers=1),
    Case("hf_huge_integers.json", "hf-daily", None, papers=1),
    Case("rss_charref_110000.xml", "arxiv-rss", None, papers=1),
    Case("rss_charref_d800.xml", "arxiv-rss", None, papers=1),
    Case("hf_wrong_types.json", "hf-daily", None, papers=2),
    Case("hf_lone_surrogates.json", "hf-daily", None, papers=1),
    Case("hf_nested_100000.json", "hf-daily", "JSON nested deeper than 64 levels"),
    Case("rss_rich_markup.xml", "arxiv-rss", None, papers=1),
    Case("rss_markup_encoding.xml", "arxiv-rss", None, papers=1),
    Case("rss_controls_bidi.xml", "arxiv-rss", None, papers=1),
    Case("rss_huge_title.xml", "arxiv-rss", None, papers=2),
    Case("empty.xml", "arxiv-rss", "expected RSS/Atom, got an empty body"),
    Case("error_page.html", "arxiv-rss", "expected RSS/Atom, got an HTML page"),
    Case("rss_unicode_digits.xml", "arxiv-rss", None, papers=1),
    Case("rss_many_attributes.xml", "arxiv-rss", None, papers=1),
    Case("rss_many_categories.xml", "arxiv-rss", None, papers=1),
)

TRAP_TITLE = "Prompting [/INST] with [bold red]style[/] and \x1b]0;pwned\x07\x1b[2J"


def rss(items: str, *, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    return (
        f'{declaration}\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom">\n<channel>\n<title>cs.XX updates on arXiv.org</title>\n'
        "<link>http://rss.arxiv.org/rss/cs.XX</link>\n<description>generated for tests</description>\n"
        f"{items}</channel>\n</rss>\n"
    )


def item(paper_id: str, *, title: str = "A generated paper", version: str = "1", categories: str = "cs.AI",
         date: str = "Mon, 27 Apr 2026 00:00:00 -0400", attributes: str = "", raw_title: bool = False) -> str:
    shown = title if raw_title else escape(title)
    cats = "".join(f"<category>{escape(c)}</category>" for c in categories.split(",")) if categories else ""
    return (
        f"<item{attributes}>\n<title>{shown}</title>\n<link>https://arxiv.org/abs/{paper_id}</link>\n"
        f"<description>arXiv:{paper_id}v{version} Announce Type: new\nAbstract: A generated abstract about "
        f"language model agents.</description>\n<guid isPermaLink=\"false\">oai:arXiv.org:{paper_id}v{version}"
        f"</guid>\n{cats}\n<pubDate>{date}</pubDate>\n<arxiv:announce_type>new</arxiv:announce_type>\n"
        "<dc:creator>Ada Lovelace, Alan Turing</dc:creator>\n</item>\n"
    )


def atom(entries: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom">\n<title>ArXiv Query</title>\n<id>http://arxiv.org/api/x</id>\n'
        f"<updated>2026-04-27T00:00:00-04:00</updated>\n{entries}</feed>\n"
    )


def entry(paper_id: str, *, published: str, updated: str) -> str:
    return (
        f"<entry>\n<id>http://arxiv.org/abs/{paper_id}v1</id>\n<updated>{updated}</updated>\n"
        f"<published>{published}</published>\n<title>Dates at the edge of time</title>\n"
        "<summary>Language model agents that plan.</summary>\n<author><name>Ada Lovelace</name></author>\n"
        '<arxiv:primary_category term="cs.AI"/>\n<category term="cs.AI"/>\n</entry>\n'
    )


def hf(*papers: dict[str, object]) -> list[dict[str, object]]:
    return [{"paper": p, "title": p.get("title"), "publishedAt": "2026-04-27T00:00:00.000Z"} for p in papers]


def hf_paper(paper_id: str, **fields: object) -> dict[str, object]:
    paper: dict[str, object] = {"id": paper_id, "title": "A generated paper", "summary": "Agents that plan.",
                                "authors": [{"name": "Ada Lovelace"}], "upvotes": 3,
                                "publishedAt": "2026-04-26T12:00:00.000Z"}
    paper.update(fields)
    return paper


def documents() -> dict[str, bytes]:
    """Every file of the corpus, by name."""
    utf8: dict[str, str] = {
        "rss_date_year_1.xml": rss(item("2699.00001", date="Mon, 01 Jan 0001 00:00:00 +0100")),
        "api_date_extremes.xml": atom(
            entry("2699.00002", published="0001-01-01T00:00:00+01:00", updated="0001-01-01T00:00:00+01:00")
            + entry("2699.00003", published="9999-12-31T23:59:59-05:00", updated="9999-12-31T23:59:59-05:00")
        ),
        "rss_version_5000_digits.xml": rss(item("2699.00004", version="9" * 5000)),
        "rss_charref_110000.xml": rss(item("2699.00005", title="Beyond Unicode &#x110000; and &#1114112;",
                                           raw_title=True)),
        "rss_charref_d800.xml": rss(item("2699.00006", title="A lone &#xD800; surrogate", raw_title=True)),
        "rss_rich_markup.xml": rss(item("2699.00007", title=TRAP_TITLE)),
        "rss_markup_encoding.xml": rss(item("2699.00008"),
                                       declaration='<?xml version="1.0" encoding="[/bogus][bold]x"?>'),
        "rss_controls_bidi.xml": rss(item(
            "2699.00009", title="Agents\x01 that \u202eesrever\u202c plan\x0b with \u2066isolates\u2069\x85 "
            "and cafe\u0301")),
        "rss_huge_title.xml": rss(item("2699.00010", title="Enormous " * 14_400) + item("2699.00011")),
        "empty.xml": "",
        "error_page.html": "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
                           "<body><h1>Service Unavailable</h1><p>Try again later.</p></body></html>\n",
        "rss_unicode_digits.xml": rss(item("\u0662\u0666\u0669\u0669.\u0660\u0660\u0660\u0661\u0662")
                                      + item("2699.00013")),
        "rss_many_attributes.xml": rss(item("2699.00014", attributes="".join(
            f' a{i}="x"' for i in range(50_000)))),
        "rss_many_categories.xml": rss(item("2699.00015", categories=",".join(
            f"cs.X{i}" for i in range(20_000)))),
    }
    files = {name: text.encode("utf-8") for name, text in utf8.items()}
    files["hf_date_extremes.json"] = _json(hf(
        hf_paper("2699.00016", publishedAt="0001-01-01T00:00:00+01:00"),
        hf_paper("2699.00017", publishedAt="9999-12-31T23:59:59-05:00"),
    ))
    files["hf_huge_integers.json"] = _json(hf(hf_paper("2699.00018v9223372036854775808", upvotes=2**63,
                                                       githubStars=2**64, githubRepo="https://github.com/x/y",
                                                       numComments="DIGITS"))).replace(b'"DIGITS"', b"9" * 5000)
    files["hf_wrong_types.json"] = _json([
        *hf(hf_paper("2699.00019", title=5), hf_paper("2699.00020", title=True),
            hf_paper("2699.00021", title=["a", "list"]), hf_paper("2699.00022", title={"a": "dict"})),
        *[{"paper": {**hf_paper("2699.00023"), "summary": 7, "authors": {"name": "x"}, "ai_keywords": "one"},
           "title": None}],
        *hf(hf_paper("2699.00024", summary=["a"], upvotes="many", authors=[{"name": 3}, {"name": "Alan Turing"}])),
    ])
    # json.dumps would write valid UTF-16 pairs; a lone surrogate needs its \u escape written by hand.
    files["hf_lone_surrogates.json"] = (
        b'[{"paper": {"id": "2699.00025", "title": "Agents \\ud800 that plan \\udfff", '
        b'"summary": "An abstract \\ud83d with a lone half", "authors": [{"name": "Ada \\udc00 Lovelace"}], '
        b'"publishedAt": "2026-04-26T12:00:00.000Z"}, "title": "Agents \\ud800 that plan \\udfff"},\n'
        b' {"paper": {"id": "2699.00026", "title": "\\udbff\\u202e\\u0007", "summary": "Nothing left of the title"}}]\n'
    )
    files["hf_nested_100000.json"] = b"[" * 100_000 + b"]" * 100_000
    return files


def _json(value: object) -> bytes:
    return json.dumps(value, indent=1).encode("utf-8")


def write_corpus(folder: Path = FOLDER) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in documents().items():
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    write_corpus()
