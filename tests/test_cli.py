"""The `newsletter` command as an operator uses it: tables, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from tests.conftest import fixture_path, write_config
from tests.support import run

CS_AI = fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        [
            ("cs-ai", "arxiv-rss", str(CS_AI)),
            ("hf", "hf-daily", str(fixture_path("derived/hf_daily_overlap_2604.21935.json"))),
            ("saturday", "arxiv-rss", str(fixture_path("arxiv_rss/allnewsai_rss_cs.CL_weekend_empty_2026-08-01.xml"))),
        ],
    )


def test_fetch_prints_a_row_per_source(config: Path) -> None:
    code, output = run(config, "fetch")
    assert code == 0, output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:7]]
            for line in output.splitlines() if line.startswith("│")}
    assert rows == {
        "cs-ai": ["3", "3", "0", "0", "0"],
        "hf": ["1", "0", "1", "0", "0"],
        "saturday": ["0", "0", "0", "0", "0"],
    }


def test_fetch_one_source_as_json(config: Path) -> None:
    code, output = run(config, "fetch", "--source", "cs-ai", "--json")
    assert code == 0
    assert json.loads(output) == {
        "sources": [{"source": "cs-ai", "fetched": 3, "new": 3, "updated": 0, "skipped": 0, "not_modified": False,
                     "errors": [], "warnings": []}],
        "topic_warnings": [],  # 3 papers: too few to say a topic is starving
    }


def test_unknown_source_is_a_one_line_error(config: Path) -> None:
    code, output = run(config, "fetch", "--source", "nope")
    assert code == 1
    assert output == "Error: no source named 'nope'; configured sources: cs-ai, hf, saturday\n"


def test_exit_code_is_non_zero_only_when_every_source_failed(tmp_path: Path) -> None:
    some = write_config(tmp_path, [("gone", "arxiv-rss", "gone.xml"), ("ok", "arxiv-rss", str(CS_AI))])
    code, output = run(some, "fetch")
    assert code == 0
    assert f"error gone: file not found: {tmp_path.resolve() / 'gone.xml'}" in output
    every = write_config(tmp_path, [("gone", "arxiv-rss", "gone.xml"), ("junk", "hf-daily", str(CS_AI))])
    code, output = run(every, "fetch")
    assert code == 1
    assert "error junk: not JSON" in output
    assert output.endswith("Error: every source failed\n")


def test_bad_config_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, [("a", "atom", "x.xml")])
    code, output = run(path, "fetch")
    assert code == 1
    assert output == (
        f"Error: {path}: sources[0].kind: expected one of 'arxiv-rss', 'arxiv-api', 'hf-daily', 'rss', found 'atom'\n"
    )


def test_papers_json_has_the_documented_shape(config: Path) -> None:
    run(config, "fetch")
    code, output = run(config, "papers", "--json")
    assert code == 0
    data = json.loads(output)
    assert data["count"] == 3
    paper = next(p for p in data["papers"] if p["id"] == "2604.21935")
    assert set(paper) == {
        "id", "version", "title", "authors", "abstract", "ai_summary", "categories", "primary_category", "links",
        "published", "first_seen", "announce_type", "signals", "trending", "topics",
    }
    assert paper["signals"] == {"upvotes": 42, "github_stars": 310, "sources": ["cs-ai", "hf"]}
    assert set(paper["links"]) == {"abstract", "pdf", "huggingface", "code", "project", "thumbnail"}
    assert paper["trending"]["explanation"].startswith("base 1.00 + 42 upvotes (+3.76) + 310 GitHub stars")
    reasoning = next(t for t in paper["topics"] if t["slug"] == "reasoning")
    assert any(r.startswith("mentions ‘reasoning’") for r in reasoning["reasons"])
    assert reasoning["closest"] == {"kind": "phrase",
                                    "text": "Mathematical and multi-step reasoning of language models"}
    assert 0 < reasoning["similarity"] <= reasoning["strength"]  # the scores stay in --json, not in the reasons


def test_papers_filters_by_topic_date_and_unmatched(config: Path) -> None:
    run(config, "fetch")
    code, output = run(config, "papers", "--topic", "agents", "--json")
    assert code == 0
    assert {p["id"] for p in json.loads(output)["papers"]} >= {"2604.21937"}
    _, output = run(config, "papers", "--since", "2100-01-01", "--json")
    assert json.loads(output) == {"count": 0, "papers": []}
    code, output = run(config, "papers", "--topic", "astro")
    assert code == 1
    assert output == "Error: no topic 'astro'; configured topics: agents, reasoning, medical\n"
    code, output = run(config, "papers", "--since", "yesterday")
    assert code == 2
    assert "Invalid value for '--since'" in output


def test_topics_counts_and_lists_unmatched(config: Path) -> None:
    run(config, "fetch")
    code, output = run(config, "topics", "--json")
    assert code == 0
    data = json.loads(output)
    assert [t["slug"] for t in data["topics"]] == ["agents", "reasoning", "medical"]
    agents = data["topics"][0]
    assert agents["count"] >= 1
    assert set(agents["top"][0]) == {"id", "title", "strength", "reasons"}
    assert data["papers"] == 3
    assert data["unmatched"]["count"] == len(data["unmatched"]["ids"])
    code, text = run(config, "topics")
    assert "LLM agents (agents):" in text
    assert "match no topic" in text


def test_help_explains_each_command() -> None:
    runner = CliRunner()
    assert "Download every source" in runner.invoke(cli, ["fetch", "--help"]).output
    assert "--unmatched" in runner.invoke(cli, ["papers", "--help"]).output
    assert "per topic" in runner.invoke(cli, ["topics", "--help"]).output.lower()


class _FeedHandler(BaseHTTPRequestHandler):
    body = CS_AI.read_bytes()
    requests: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).requests.append(dict(self.headers))
        if self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def feed_server() -> Iterator[str]:
    _FeedHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rss/cs.AI"
    server.shutdown()
    server.server_close()


def test_fetch_over_http_uses_conditional_get(tmp_path: Path, feed_server: str) -> None:
    path = write_config(tmp_path, [("cs-ai", "arxiv-rss", feed_server)])
    code, output = run(path, "fetch", "--json")
    assert code == 0
    assert json.loads(output)["sources"][0]["new"] == 3
    code, output = run(path, "fetch", "--json")
    assert code == 0
    assert json.loads(output)["sources"][0]["not_modified"] is True
    assert _FeedHandler.requests[1]["If-None-Match"] == '"v1"'
    assert _FeedHandler.requests[0]["User-Agent"].startswith("trending-papers-newsletter/")


HEAVY_MODULES = ("sklearn", "scipy", "torch")


def imported_top_level_modules(arguments: list[str], cwd: Path) -> set[str]:
    """Run `python -X importtime -m newsletter ARGS` and return the top-level modules it imported."""
    import os
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-X", "importtime", "-m", "newsletter", *arguments], cwd=cwd,
                               capture_output=True, text=True, timeout=120, check=False,
                               env={**os.environ, "NEWSLETTER_SECRET": "test-secret"})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    names = set()
    for line in completed.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_help_and_status_load_no_machine_learning_library(config: Path, tmp_path: Path) -> None:
    assert run(config, "fetch")[0] == 0  # a database with papers and matches: status has something to read
    for arguments in (["--help"], ["--config", str(config), "status"]):
        loaded = imported_top_level_modules(arguments, tmp_path)
        assert "newsletter" in loaded
        assert not loaded & set(HEAVY_MODULES), arguments


def test_papers_and_topics_only_read_and_say_when_the_topics_changed(config: Path) -> None:
    from newsletter.config import load_settings
    from newsletter.matching.refresh import FINGERPRINT_KEY
    from newsletter.storage.db import open_database
    from newsletter.storage.papers import PaperStore

    assert run(config, "fetch")[0] == 0
    store = PaperStore(open_database(load_settings(config).newsletter.database_url))
    before = (store.get_meta(FINGERPRINT_KEY), store.matches())
    config.write_text(config.read_text(encoding="utf-8").replace('slug = "agents"', 'slug = "agent-systems"'),
                      encoding="utf-8")
    for command in (["papers"], ["topics"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *command], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "the topics or the matching method changed since the last `newsletter fetch`" in result.output
        assert (store.get_meta(FINGERPRINT_KEY), store.matches()) == before  # nothing matched again, nothing written
    assert run(config, "fetch")[0] == 0
    assert store.get_meta(FINGERPRINT_KEY) != before[0]  # the next fetch does the matching
