"""Issue 25, the web door: `newsletter web` as a real process on 127.0.0.1, with the open-file limit many
services start with (soft 1,024), against stalled request bodies and clients that hang up mid-body."""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fixture_path, write_config
from tests.inbound_support import wait_for_port
from tests.mailsink import MailSink
from tests.support import free_port
from tests.web_support import TOPICS, make_site

STALLED = 1_100
"""The issue's attack: 1,100 connections from one client, each a POST whose body never comes."""
POST_HEAD = (b"POST /subscribe HTTP/1.1\r\nHost: papers.example.org\r\n"
             b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nemail=a")


def _soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


@contextlib.contextmanager
def _web(tmp_path: Path, extra: str = "") -> Iterator[tuple[int, Path]]:
    port = free_port()
    source = ("cs-ai", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml")))
    config = write_config(tmp_path, [source], extra=f"[web]\nport = {port}\nbody_timeout_seconds = 2\n{extra}")
    log = tmp_path / "web.log"
    env = dict(os.environ, NEWSLETTER_SECRET="k1:web-attack-secret-0123456789")
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "web"], env=env,
                                   stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=_soft_limit)
    try:
        wait_for_port(port)
        yield port, log
    finally:
        process.kill()
        process.wait(timeout=30)


def _healthz(port: int, source: str, timeout: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: papers.example.org\r\nConnection: close\r\n\r\n")
        return sock.recv(64)


@pytest.mark.slow
def test_stalled_bodies_leave_healthz_answering_within_a_second(tmp_path: Path) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2 * STALLED + 200:
        pytest.skip("the hard open-file limit is too low for this test")
    _soft_limit_self = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(_soft_limit_self[0], 2 * STALLED + 200), _soft_limit_self[1]))
    stalled: list[socket.socket] = []
    try:
        with _web(tmp_path) as (port, log):
            for _ in range(STALLED):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                with contextlib.suppress(OSError):  # a connection past the per-client limit is closed at once
                    sock.sendall(POST_HEAD)
                stalled.append(sock)
            for _ in range(3):  # another client, while the stalled ones are held
                started = time.monotonic()
                assert _healthz(port, "127.0.0.2", timeout=1).startswith(b"HTTP/1.1 200"), "no answer within 1 s"
                assert time.monotonic() - started < 1
            time.sleep(3)  # past body_timeout_seconds: every stalled body is answered or closed
            answers = []
            for sock in stalled:
                sock.settimeout(0.5)
                try:
                    answers.append(sock.recv(64))
                except OSError:  # reset: closed when it was accepted
                    answers.append(b"")
            assert all(a.startswith(b"HTTP/1.1 408") or a == b"" for a in answers)
            assert any(a.startswith(b"HTTP/1.1 408") for a in answers)
            assert _healthz(port, "127.0.0.1", timeout=1).startswith(b"HTTP/1.1 200")  # the first client, later
        text = log.read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in text
        assert len(text.splitlines()) < 20, text[:2000]
    finally:
        for sock in stalled:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, _soft_limit_self)


@pytest.mark.slow
def test_a_client_hanging_up_mid_body_is_a_quiet_end(tmp_path: Path) -> None:
    with _web(tmp_path) as (port, log):
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(POST_HEAD)
                time.sleep(0.2)
        time.sleep(0.5)
        assert _healthz(port, "127.0.0.1", timeout=2).startswith(b"HTTP/1.1 200")
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "unexpected error" not in text
    assert "Traceback" not in text


SPELLINGS = ["victim@bücher.de", "victim@xn--bcher-kva.de", "VICTIM@BÜCHER.DE", "victim@ｂüｃｈｅｒ.de",
             "victim@bu\u0308cher.de", "victim@ＢÜＣＨＥＲ．ｄｅ"]
"""One mailbox: the IDN, its xn-- form, upper case, fullwidth letters, a decomposed ü, a fullwidth dot."""


def test_spellings_of_one_mailbox_share_its_confirmation_quota(tmp_path: Path, sink: MailSink,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path, sink, monkeypatch, per_ip=1_000)
    choices = [topics for size in (1, 2, 3) for topics in itertools.combinations(TOPICS, size)]
    for number, spelling in enumerate(SPELLINGS):  # a different request each time: none is a mere repeat
        for topics in choices[number % 2::2][:3]:
            assert site.subscribe(spelling, topics=topics) == 200
    assert len({m.rcpt_tos[0] for m in sink.messages}) == 1
    assert len(sink.messages) == 3  # the mailbox's quota, whatever the spelling
