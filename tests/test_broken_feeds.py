"""Hostile and broken feeds never stop a fetch, never hang it, and never break a later command (issue 15).

Each document of tests/fixtures/broken/ (see tests/broken_feeds.py) is fetched beside a good source through
the real CLI; then the commands an operator runs next must work. Server-side faults (a non-ASCII
Last-Modified, markup in a reason phrase, an HTML error page, a slowloris) come from a real HTTP server
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from newsletter.cli.main import cli
from newsletter.cli.output import plain, term
from newsletter.config import FetchSettings, load_settings
from newsletter.errors import SourceTimeoutError
from newsletter.sources.documents import json_depth
from newsletter.sources.fetching import FetchRequest, HostPacer, fetch_one
from newsletter.sources.sanitize import MAX_TITLE_CHARS, cap, clean_text, safe_validator
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.web.app import create_app
from subscribers.store import SubscriberStore
from tests.broken_feeds import CASES, FOLDER, TRAP_TITLE, Case
from tests.conftest import fixture_path, write_config
from tests.mailsink import MailSink
from tests.support import http_server, run, secret_fixture

GOOD = ("cs-ai", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml")))
SECRET = "k1:broken-feeds-secret-0123456789"
# What must never reach an email, a page or a terminal: C0 (but tab, newline, CR), DEL, C1, surrogates, bidi.
UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def rows(output: str) -> dict[str, list[str]]:
    return {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:7]]
            for line in output.splitlines() if line.startswith("│")}


def error_lines(output: str, source: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"error {source}:")]


secret = secret_fixture(SECRET)


def test_the_corpus_on_disk_is_what_the_generator_writes(tmp_path: Path) -> None:
    from tests.broken_feeds import write_corpus

    write_corpus(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(c.name for c in CASES)
    for case in CASES:
        assert (tmp_path / case.name).read_bytes() == (FOLDER / case.name).read_bytes(), case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_broken_feed_beside_a_good_one(tmp_path: Path, case: Case) -> None:
    config = write_config(tmp_path, [GOOD, ("bad", case.kind, str(FOLDER / case.name))])
    code, output = run(config, "fetch")
    assert code == 0, output
    assert "Traceback" not in output
    table = rows(output)
    assert table["cs-ai"] == ["3", "3", "0", "0", "0"]
    if case.error is None:
        assert error_lines(output, "bad") == []
        assert int(table["bad"][1]) == case.papers, output
    else:
        assert [line[len("error bad: "):][:len(case.error)] for line in error_lines(output, "bad")] == [case.error]
    assert "\x1b" not in output

    code, output = run(config, "papers", "--json")
    assert code == 0, output
    papers = json.loads(output)["papers"]
    assert len(papers) == 3 + case.papers
    for paper in papers:
        for text in (paper["title"], paper["abstract"], *paper["authors"], *paper["categories"]):
            assert not UNSAFE.search(text), (paper["id"], text)
        assert 0 < len(paper["title"]) <= MAX_TITLE_CHARS
        assert len(paper["categories"]) <= 32
        for count in (paper["version"], paper["signals"]["upvotes"], paper["signals"]["github_stars"]):
            assert count is None or 0 <= count < 2**31
        assert paper["published"] is None or "1991" <= paper["published"][:4] < "2200"
    for command in (["papers"], ["topics"], ["status"]):
        code, output = run(config, *command)
        assert code == 0, (command, output)
        assert "\x1b" not in output


def test_markup_and_escapes_in_a_title_are_printed_literally(tmp_path: Path) -> None:
    config = write_config(tmp_path, [("bad", "arxiv-rss", str(FOLDER / "rss_rich_markup.xml"))])
    assert run(config, "fetch")[0] == 0
    code, output = run(config, "topics", "--top", "5")
    assert code == 0, output
    assert "Prompting [/INST] with [bold red]style[/] and ]0;pwned[2J" in output
    assert "\x1b" not in output
    assert "\x07" not in output
    assert term(TRAP_TITLE) == "Prompting \\[/INST] with \\[bold red]style\\[/] and \\x1b]0;pwned\\x07\\x1b[2J"
    assert plain("a\u202eb\x85") == "a\\u202eb\\x85"


@pytest.mark.slow
def test_after_every_broken_feed_preview_send_archive_and_status_work(tmp_path: Path) -> None:
    with MailSink() as sink:
        sources = [GOOD, *((f"bad{i}", c.kind, str(FOLDER / c.name)) for i, c in enumerate(CASES))]
        config = write_config(tmp_path, sources, extra=f"[delivery]\nport = {sink.port}\ntimeout_seconds = 5\n")
        code, output = run(config, "fetch")
        assert code == 0, output
        assert "Traceback" not in output
        assert rows(output)["cs-ai"] == ["3", "3", "0", "0", "0"]
        failed = {i for i, c in enumerate(CASES) if c.error}
        for i, case in enumerate(CASES):
            assert len(error_lines(output, f"bad{i}")) == (1 if i in failed else 0), (case.name, output)

        settings = load_settings(config)
        engine = open_database(settings.newsletter.database_url)
        SubscriberStore(engine).add("ada@example.org", name="Ada", topics=["agents", "reasoning", "medical"],
                                    now=datetime.now(UTC))
        code, output = run(config, "preview", "--topics", "agents,reasoning,medical", "--out",
                           str(tmp_path / "preview"))
        assert code == 0, output
        for path in (tmp_path / "preview").iterdir():
            assert not UNSAFE.search(path.read_text(encoding="utf-8")), path.name
        code, output = run(config, "send")
        assert code == 0, output
        assert "this run: 1 sent" in output, output
        message = email.message_from_bytes(sink.messages[0].data, policy=email.policy.default)
        for part in ("html", "plain"):
            body = message.get_body((part,)).get_content()  # type: ignore[union-attr]
            assert not UNSAFE.search(body), part
            assert "2604.2193" in body  # papers of the good source
            assert "2699.000" in body  # and papers of the broken ones

        editions = EditionStore(engine).editions()
        assert editions
        client = TestClient(create_app(settings, engine), follow_redirects=False)
        assert client.get("/archive").status_code == 200
        page = client.get(f"/archive/{editions[0].slug}")
        assert page.status_code == 200
        assert not UNSAFE.search(page.text)
        for command in (["status"], ["papers"], ["papers", "--json"], ["topics"]):
            code, output = run(config, *command)
            assert code == 0, (command, output)


def test_the_whole_corpus_is_stored_on_sqlite_and_postgresql(tmp_path: Path, database_url: str) -> None:
    """PostgreSQL refuses what SQLite keeps (NUL, a BIGINT past 2^63, a longer value than a column): one
    such value would fail the whole batch of its source there."""
    sources = [GOOD, *((f"bad{i}", c.kind, str(FOLDER / c.name)) for i, c in enumerate(CASES))]
    config = write_config(tmp_path, sources)
    result = CliRunner().invoke(cli, ["--config", str(config), "fetch", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    reports = {r["source"]: r for r in json.loads(result.stdout)["sources"]}  # warnings are logged to stderr
    for i, case in enumerate(CASES):
        report = reports[f"bad{i}"]
        if case.error is None:
            assert (report["errors"], report["new"]) == ([], case.papers), (case.name, report)
        else:
            assert [e[:len(case.error)] for e in report["errors"]] == [case.error], (case.name, report)
    code, output = run(config, "papers", "--json")
    assert code == 0, output
    assert json.loads(output)["count"] == 3 + sum(c.papers for c in CASES)


def test_an_unforeseen_exception_is_that_sources_error_and_saves_no_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boundary itself, for the bug no rule above foresaw: a fault injected into the real parser for one
    source (every other source parses for real) becomes one line for it, and the fetch goes on."""
    import newsletter.usecases.fetch as ingest

    real = ingest.parse_feed_chunks

    def faulty(kind: str, data: bytes, *, source: str, **options: object) -> object:
        if source == "bad":
            raise RecursionError("maximum recursion depth exceeded\nwhile parsing \x00 \ud800")
        return real(kind, data, source=source, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "parse_feed_chunks", faulty)
    config = write_config(tmp_path, [("bad", "arxiv-rss", GOOD[2]), GOOD])
    code, output = run(config, "fetch")
    assert code == 0, output
    assert "Traceback" not in output
    assert rows(output)["cs-ai"] == ["3", "3", "0", "0", "0"]
    assert error_lines(output, "bad") == [
        "error bad: could not parse or store the document: RecursionError: maximum recursion depth exceeded"]
    state = PaperStore(open_database(load_settings(config).newsletter.database_url)).source_state("bad")
    assert state.last_status == "error"
    assert state.last_success is None
    assert run(config, "status")[0] == 0


# --- faults of the server ------------------------------------------------------------------------------------

FEED = fixture_path("arxiv_rss/distill_rss_cs.CL_2026-04-27.xml").read_bytes()


class FaultyHandler(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path == "/lastmod":
            self.send_response(200)
            self.send_header("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT \xe9t\xe9")
            self.send_header("ETag", '"caf\xe9"')
            body = FEED
        elif self.path == "/reason":
            self.send_response(500, "[/INST] \x1b[31mbroken[bold]")
            body = b""
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            body = (FOLDER / "error_page.html").read_bytes()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def faulty() -> Iterator[str]:
    FaultyHandler.seen = []
    with http_server(FaultyHandler) as url:
        yield url


def test_server_faults_are_one_line_each_and_poison_nothing(tmp_path: Path, faulty: str) -> None:
    sources = [GOOD, ("lastmod", "arxiv-rss", f"{faulty}/lastmod"), ("reason", "arxiv-rss", f"{faulty}/reason"),
               ("html", "arxiv-rss", f"{faulty}/html")]
    config = write_config(tmp_path, sources)
    for _ in range(2):
        code, output = run(config, "fetch")
        assert code == 0, output
        assert "Traceback" not in output
        assert "\x1b" not in output
        table = rows(output)
        assert table["cs-ai"][0] == "3"
        assert table["lastmod"][0] == "3", output  # the feed is read both times: no poisoned validator
        assert error_lines(output, "reason") == [
            f"error reason: HTTP 500 [/INST] [31mbroken[bold] from {faulty}/reason; gave up after 1 attempt"]
        assert error_lines(output, "html") == ["error html: expected RSS/Atom, got text/html (an HTML page)"]
        code, output = run(config, "status")
        assert code == 0, output
        assert "[/INST]" in output
    second = [r for r in FaultyHandler.seen if r["path"] == "/lastmod"][1]
    assert "if-modified-since" not in second
    assert "if-none-match" not in second
    store = PaperStore(open_database(load_settings(config).newsletter.database_url))
    state = store.source_state("lastmod")
    assert (state.etag, state.last_modified) == (None, None)


def test_a_poisoned_validator_stored_earlier_is_not_sent(tmp_path: Path, faulty: str) -> None:
    config = write_config(tmp_path, [("lastmod", "arxiv-rss", f"{faulty}/lastmod")])
    store = PaperStore(open_database(load_settings(config).newsletter.database_url))
    state = store.source_state("lastmod")
    store.record_fetch(dataclasses.replace(state, etag='"caf\xe9"', last_modified="Tue, 01 Dec 2026 \u00e9t\u00e9"))
    code, output = run(config, "fetch")
    assert code == 0, output
    assert rows(output)["lastmod"][0] == "3"
    assert "if-modified-since" not in FaultyHandler.seen[0]


# --- a server that dribbles ------------------------------------------------------------------------------------


async def test_a_slowloris_is_cut_off_at_the_deadline() -> None:
    sent = 0

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):  # bounded: 200 bytes at 0.05 s, at most 10 s
            writer.write(b" ")
            sent += 1
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(dribble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = FetchSettings(timeout_seconds=1.0, max_retries=0, per_host_delay_seconds=0)
    started = time.monotonic()
    async with server, httpx.AsyncClient(timeout=httpx.Timeout(1.0)) as client:
        with pytest.raises(SourceTimeoutError, match="timed out after 1 s"):
            await fetch_one(FetchRequest("slow", f"http://127.0.0.1:{port}/feed"), settings=settings,
                            client=client, pacer=HostPacer(0))
        elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed  # every read came within 0.05 s: only a whole-response deadline stops it
    assert 0 < sent < 200


# --- the rules, one by one ----------------------------------------------------------------------------------------


def test_text_is_nfc_without_controls_surrogates_or_bidi() -> None:
    assert clean_text("cafe\u0301\x00\x1b[1m\u202etxt\u2066\ud800\x85 ok\tand\nlines") == "café[1mtxt ok\tand\nlines"
    assert cap("word " * 200, 50) == ("word " * 10).strip() + "…"
    assert len(cap("x" * 1000, 50)) == 50
    assert safe_validator("Tue, 01 Dec 2026 10:00:00 GMT") == "Tue, 01 Dec 2026 10:00:00 GMT"
    assert safe_validator("Tue, 01 Dec 2026 \xe9") is None
    assert safe_validator('"a\r\nX-Injected: 1"') is None


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'[{"a": "[[[[[[[[", "b": [1, [2]]}]') == 4
    assert json_depth(b'["\\"[[[", {}]') == 2
