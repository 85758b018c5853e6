"""Issue 25, the feed door: a feed host that sends a decompression bomb or redirects to internal services,
served from 127.0.0.1 and fetched with `fetch_one` and with `newsletter fetch`."""

from __future__ import annotations

import dataclasses
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from newsletter.config import FetchSettings
from newsletter.errors import SourceError
from newsletter.sources.fetching import FetchRequest, HostPacer, fetch_one, new_client
from tests.conftest import fixture_path, write_config
from tests.support import http_server
from tests.test_broken_feeds import error_lines, rows, run

FEED = fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml").read_bytes()
INFLATED = 200_000_000
"""Bytes the bomb inflates to: a test-sized stand-in for the issue's 2 GB (the same shape, 10 times smaller)."""
CAP = 1_000_000


def _bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1_000_000)
    inner = b"".join(compressor.compress(zeros) for _ in range(INFLATED // len(zeros))) + compressor.flush()
    return gzip.compress(inner, 9)


class FeedHost(BaseHTTPRequestHandler):
    """/bomb: ``gzip, gzip``; /feed and /feed.gz: a real feed; /hop/N: redirects N times; /to?url: redirects
    there; /internal: what must never be reached from outside."""

    bomb: ClassVar[bytes] = b""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        FeedHost.seen.append(self.path)
        if self.path == "/bomb":
            self._answer(200, FeedHost.bomb, {"Content-Encoding": "gzip, gzip", "Content-Type": "application/rss+xml"})
        elif self.path == "/feed":
            self._answer(200, FEED, {"Content-Type": "application/rss+xml"})
        elif self.path == "/feed.gz":
            self._answer(200, gzip.compress(gzip.compress(FEED)), {"Content-Encoding": "gzip, x-gzip"})
        elif self.path == "/deflate":
            self._answer(200, zlib.compress(FEED), {"Content-Encoding": "deflate"})
        elif self.path == "/trailing":  # a small gzip stream, then megabytes that are not part of it, no length
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(gzip.compress(FEED) + bytes(5_000_000))
        elif self.path == "/br":
            self._answer(200, b"x", {"Content-Encoding": "br"})
        elif self.path.startswith("/hop/"):
            left = int(self.path.rpartition("/")[2])
            self._answer(302, b"", {"Location": f"/hop/{left - 1}" if left else "/feed"})
        elif self.path.startswith("/to?"):
            self._answer(302, b"", {"Location": self.path.partition("?")[2]})
        elif self.path == "/internal":
            self._answer(200, FEED, {"Content-Type": "application/rss+xml"})
        else:
            self._answer(404, b"", {})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    FeedHost.bomb = _bomb()
    with http_server(FeedHost) as url:
        yield url


SETTINGS = FetchSettings(timeout_seconds=20.0, max_bytes=CAP, max_retries=0, per_host_delay_seconds=0.0)


async def _fetch(url: str, settings: FetchSettings = SETTINGS) -> bytes:
    async with new_client(settings) as client:
        response = await fetch_one(FetchRequest("feed", url), settings=settings, client=client,
                                   pacer=HostPacer(0))
    return response.body or b""


async def test_a_stacked_gzip_bomb_is_refused_within_the_cap_plus_a_constant(host: str) -> None:
    assert len(FeedHost.bomb) < 10_000  # a few KB on the wire
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="larger than 1000000 bytes"):
            await _fetch(f"{host}/bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < CAP + 4_000_000, peak  # the body kept so far, a few 64 KiB pieces, httpx's own buffers


async def test_honest_codings_still_decode(host: str) -> None:
    assert await _fetch(f"{host}/feed.gz") == FEED
    assert await _fetch(f"{host}/deflate") == FEED
    with pytest.raises(SourceError, match="'br' is not accepted"):
        await _fetch(f"{host}/br")
    with pytest.raises(SourceError, match="larger than 1000000 bytes"):
        await _fetch(f"{host}/trailing")


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/internal", "http://localhost:{port}/internal",
                                    "http://[::1]:{port}/internal", "http://169.254.169.254/latest/meta-data",
                                    "http://10.0.0.1/", "http://0.0.0.0:{port}/internal", "file:///etc/passwd",
                                    "gopher://127.0.0.1:{port}/"])
async def test_a_redirect_to_an_internal_address_is_not_followed(host: str, target: str) -> None:
    FeedHost.seen = []
    port = host.rpartition(":")[2]
    with pytest.raises(SourceError, match="redirect to"):
        await _fetch(f"{host}/to?{target.format(port=port)}")
    assert "/internal" not in FeedHost.seen


async def test_redirects_are_followed_when_allowed_and_bounded(host: str) -> None:
    allowed = dataclasses.replace(SETTINGS, allow_private_redirects=True)
    port = host.rpartition(":")[2]
    assert await _fetch(f"{host}/to?http://localhost:{port}/internal", allowed) == FEED
    assert await _fetch(f"{host}/hop/3", allowed) == FEED
    with pytest.raises(SourceError, match="more than 5 redirects"):
        await _fetch(f"{host}/hop/9", allowed)


def test_fetch_reports_the_bomb_and_the_redirect_in_one_line_each(tmp_path: Path, host: str) -> None:
    port = host.rpartition(":")[2]
    sources = [("bomb", "rss", f"{host}/bomb"), ("hop", "rss", f"{host}/to?http://127.0.0.1:{port}/internal"),
               ("good", "rss", f"{host}/feed")]
    config = write_config(tmp_path, sources, extra=f"max_bytes = {CAP}")
    FeedHost.seen = []
    code, output = run(config, "fetch")
    assert code == 0, output
    assert "Traceback" not in output
    assert error_lines(output, "bomb") == [f"error bomb: response larger than {CAP} bytes from {host}/bomb"]
    (hop,) = error_lines(output, "hop")
    assert "a loopback, private or reserved address, is not followed" in hop
    assert "/internal" not in FeedHost.seen
    assert rows(output)["good"][0] == "3"
