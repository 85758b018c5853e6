"""The optional TL;DR endpoint (`[email.tldr] endpoint`, newsletter/usecases/tldr_model.py) against a local
stand-in of an OpenAI-compatible server on 127.0.0.1: answers that pass the faithfulness guard are used, an
invented number or name is refused, a slow answer is not waited for past the time budget, and a server that is
down changes nothing — every paper without a kept answer keeps its extractive TL;DR."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.records.summaries import extractive_tldr
from newsletter.records.text import html_to_text
from newsletter.rendering.latex import latex_to_text
from newsletter.storage.db import open_database
from newsletter.storage.papers import PaperStore
from newsletter.usecases.preview import preview
from newsletter.usecases.tldr_model import model_tldrs, unfaithful_terms
from tests.design_support import offline_settings_in
from tests.email_support import NOW, fetch, fix_tokens
from tests.support import free_port

FAITHFUL = "A short faithful summary of what this paper does."
SLOW_SECONDS = 4.0
BUDGET = 1.5


class Stand_in(BaseHTTPRequestHandler):
    """Chat completions by the paper's title: ``invent`` gets a made-up number, ``slow`` waits, others pass."""

    invent: str = ""
    slow: str = ""
    calls: list[str] = []  # noqa: RUF012 - shared by the server's threads on purpose
    release = threading.Event()
    """Set when the test ends: a slow answer stops waiting, so no request outlives its test."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        title = prompt.split("Title: ", 1)[1].split("\n", 1)[0]
        type(self).calls.append(title)
        if title == self.slow:
            self.release.wait(SLOW_SECONDS)
        answer = "It improves accuracy by 97.3% on ImageNet-Zeta." if title == self.invent else FAITHFUL
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client stopped waiting (its time budget)
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Stand_in)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Stand_in.calls = []
    Stand_in.release.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        Stand_in.release.set()
        time.sleep(0.2)  # the released answer reaches the abandoned request's thread, which then ends
        httpd.shutdown()
        httpd.server_close()


def with_endpoint(settings: Settings, url: str) -> Settings:
    tldr = dataclasses.replace(settings.email.tldr, endpoint=url, seconds=BUDGET)
    return dataclasses.replace(settings, email=dataclasses.replace(settings.email, tldr=tldr))


def test_the_guard_refuses_numbers_and_names_the_abstract_lacks() -> None:
    abstract = "We propose FastNet, which is 3.2x faster on CIFAR-10 than ResNet."
    assert unfaithful_terms("FastNet is 3.2x faster than ResNet.", abstract) == []
    assert unfaithful_terms("FastNet is 4.5x faster on ImageNet.", abstract) == ["4.5x", "ImageNet"]


def test_answers_within_budget_are_used_and_the_rest_stay_extractive(tmp_path: Path, server: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    settings = offline_settings_in(tmp_path, max_papers_per_topic=10)
    store = PaperStore(open_database(settings.newsletter.database_url))
    fetch(settings, store)
    plain = preview(settings, store, out_dir=tmp_path / "plain", now=NOW.replace(hour=9), topics=["agents"])
    assert plain.html_path is not None
    assert FAITHFUL not in plain.html_path.read_text(encoding="utf-8")

    papers = [p for p in store.papers() if not p.ai_summary and p.abstract][:6]
    Stand_in.invent, Stand_in.slow = papers[0].title, papers[1].title
    started = time.monotonic()
    answers = model_tldrs(with_endpoint(settings, server), papers)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET + 1.0  # the slow answer is not waited for
    assert papers[0].paper_id not in answers  # invented "97.3%" and "ImageNet-Zeta": refused
    assert papers[1].paper_id not in answers  # past the budget
    assert set(answers.values()) == {FAITHFUL}
    assert len(answers) >= 3

    Stand_in.invent = Stand_in.slow = ""
    Stand_in.calls = []
    result = preview(with_endpoint(settings, server), store, out_dir=tmp_path / "model", now=NOW.replace(hour=9))
    assert result.html_path is not None
    html_part = result.html_path.read_text(encoding="utf-8")
    assert Stand_in.calls  # asked only for papers without a Hugging Face AI summary
    assert html_part.count(FAITHFUL) == len(set(Stand_in.calls))  # the endpoint's TL;DR on their cards
    assert "AI summary (Hugging Face):" in html_part  # the others keep theirs, labelled


def test_a_server_that_is_down_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    settings = offline_settings_in(tmp_path, max_papers_per_topic=10)
    store = PaperStore(open_database(settings.newsletter.database_url))
    fetch(settings, store)
    papers = [p for p in store.papers() if not p.ai_summary and p.abstract][:4]
    down = with_endpoint(settings, f"http://127.0.0.1:{free_port()}/v1")
    assert model_tldrs(down, papers) == {}  # type: ignore[arg-type]
    result = preview(down, store, out_dir=tmp_path / "down", now=NOW.replace(hour=9))
    assert result.html_path is not None
    html_part = result.html_path.read_text(encoding="utf-8")
    shown = [p for p in store.papers() if not p.ai_summary and f'data-paper="{p.paper_id}"' in html_part]
    assert shown
    for paper in shown:  # the extractive TL;DR, as without an endpoint
        assert extractive_tldr(latex_to_text(html_to_text(paper.abstract)))[:60] in html.unescape(html_part)
