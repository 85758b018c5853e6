"""Fetching against a real HTTP server on 127.0.0.1 whose replies each test scripts per path."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

from newsletter.config import FetchSettings
from newsletter.errors import SourceError, SourceTimeoutError
from newsletter.sources.fetching import (
    FetchRequest,
    FetchResponse,
    HostPacer,
    _retry_after_seconds,
    fetch_all,
    fetch_one,
    host_key,
    new_client,
)

# Every test is async: pytest-asyncio warns when this mark lands on a plain function.
pytestmark = pytest.mark.asyncio

FAST = FetchSettings(
    timeout_seconds=1.0,
    max_bytes=1_000_000,
    max_retries=2,
    backoff_seconds=0.01,
    max_retry_after_seconds=5.0,
    per_host_delay_seconds=0.0,
    user_agent="newsletter-tests/1.0",
)
SLACK = 0.02  # timer and thread scheduling jitter allowed on "at least this far apart" checks

Framing = Literal["length", "close", "chunked"]


def settings(**changes: Any) -> FetchSettings:
    return dataclasses.replace(FAST, **changes)


# --- a scripted HTTP server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # sleep this long before answering
    stream_bytes: int = 0  # > 0: send this many bytes in slow 64 KiB pieces instead of ``body``
    framing: Framing = "length"  # how a streamed body is delimited: Content-Length, connection close, chunks
    body_delay: float = 0.0  # streamed replies: sleep this long between the headers and the body


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]  # names lower-cased
    at: float  # time.monotonic() on arrival


class Server:
    """Answers each path with its scripted replies in order (the last repeats); records every request."""

    def __init__(self) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.streamed: list[int] = []  # bytes written by each streamed reply, once it has stopped
        self.stream_stopped = threading.Event()
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def on(self, path: str, *replies: Reply) -> str:
        self.script[path] = list(replies)
        return self.url(path)

    def requests(self, path: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.path == path]

    def next_reply(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.seen.append(Seen(path, headers, time.monotonic()))
            replies = self.script.get(path) or [Reply(404)]
            return replies.pop(0) if len(replies) > 1 else replies[0]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-reply is what several tests do on purpose."""


def _handler_for(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply = server.next_reply(self.path, {k.lower(): v for k, v in self.headers.items()})
            time.sleep(reply.delay)
            try:
                if reply.stream_bytes:
                    self._stream(reply)
                else:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
            except OSError:
                self.close_connection = True

        def _stream(self, reply: Reply) -> None:
            if reply.framing == "chunked":
                self.protocol_version = "HTTP/1.1"
            self.send_response(reply.status)
            if reply.framing == "length":
                self.send_header("Content-Length", str(reply.stream_bytes))
            elif reply.framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            time.sleep(reply.body_delay)
            piece = b"x" * 65536
            sent = 0
            try:
                while sent < reply.stream_bytes:
                    if reply.framing == "chunked":
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    else:
                        self.wfile.write(piece)
                    sent += len(piece)
                    time.sleep(0.002)
            finally:
                server.streamed.append(sent)
                server.stream_stopped.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _serve() -> Iterator[Server]:
    server = Server()
    server._thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture
def other_server() -> Iterator[Server]:
    """A second host: same address, another port, so another pacing key."""
    yield from _serve()


async def fetch(request: FetchRequest, fetch_settings: FetchSettings = FAST) -> FetchResponse:
    async with new_client(fetch_settings) as client:
        pacer = HostPacer(fetch_settings.per_host_delay_seconds)
        return await fetch_one(request, settings=fetch_settings, client=client, pacer=pacer)


def gaps(seen: list[Seen]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(seen)]


# --- HTTP ---------------------------------------------------------------------------------------------------


async def test_ok_returns_body_and_sends_user_agent(server: Server) -> None:
    url = server.on("/feed", Reply(body=b"<rss/>"))

    results = await fetch_all([FetchRequest("arxiv", url)], settings=FAST)

    assert results == [
        FetchResponse("arxiv", url, b"<rss/>", not_modified=False, etag=None, last_modified=None)
    ]
    [seen] = server.requests("/feed")
    assert seen.headers["user-agent"] == "newsletter-tests/1.0"
    assert "if-none-match" not in seen.headers


async def test_conditional_get_sends_validators_and_304_is_not_modified(server: Server) -> None:
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    url = server.on(
        "/feed",
        Reply(body=b"v1", headers={"ETag": '"abc"', "Last-Modified": stamp}),
        Reply(304),
        Reply(304, headers={"ETag": '"def"'}),
    )

    first = await fetch(FetchRequest("hf", url))
    assert (first.body, first.etag, first.last_modified) == (b"v1", '"abc"', stamp)
    again = FetchRequest("hf", url, etag=first.etag, last_modified=first.last_modified)
    second = await fetch(again)
    third = await fetch(again)

    assert second == FetchResponse("hf", url, None, not_modified=True, etag='"abc"', last_modified=stamp)
    assert third == FetchResponse("hf", url, None, not_modified=True, etag='"def"', last_modified=stamp)
    conditional = server.requests("/feed")[1].headers
    assert conditional["if-none-match"] == '"abc"'
    assert conditional["if-modified-since"] == stamp


async def test_429_waits_for_retry_after(server: Server) -> None:
    url = server.on("/feed", Reply(429, headers={"Retry-After": "1"}), Reply(body=b"ok"))

    response = await fetch(FetchRequest("arxiv", url))

    assert response.body == b"ok"
    assert gaps(server.requests("/feed"))[0] >= 1.0 - SLACK


async def test_503_is_retried_with_backoff_and_pacing(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    paced = settings(per_host_delay_seconds=0.2)
    url = server.on("/feed", Reply(503), Reply(503), Reply(body=b"ok"))

    with caplog.at_level(logging.WARNING, logger="newsletter.sources.fetching"):
        response = await fetch(FetchRequest("arxiv", url), paced)

    assert response.body == b"ok"
    seen = server.requests("/feed")
    assert len(seen) == 3
    assert all(gap >= 0.2 - SLACK for gap in gaps(seen))
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "source 'arxiv': HTTP 503 Service Unavailable from" in caplog.records[0].getMessage()
    assert "retry 2 of 2 in 0.0 s" in caplog.records[1].getMessage()


async def test_500_forever_gives_up_after_max_retries(server: Server) -> None:
    url = server.on("/feed", Reply(500))

    with pytest.raises(SourceError) as caught:
        await fetch(FetchRequest("arxiv", url), settings(max_retries=2))

    assert not isinstance(caught.value, SourceTimeoutError)
    assert caught.value.reason == f"HTTP 500 Internal Server Error from {url}; gave up after 3 attempts"
    assert len(server.requests("/feed")) == 3


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
async def test_retry_after_too_long_fails_at_once(server: Server, status: int, as_date: bool) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    url = server.on("/feed", Reply(status, headers={"Retry-After": later if as_date else "120"}))
    started = time.monotonic()

    with pytest.raises(
        SourceError,
        match=r"asks to retry after \d+(\.\d+)? s, longer than "
        r"max_retry_after_seconds \(5 s\)$",
    ):
        await fetch(FetchRequest("arxiv", url))

    assert time.monotonic() - started < 0.5
    assert len(server.requests("/feed")) == 1


@pytest.mark.parametrize(("status", "phrase"), [(404, "Not Found"), (403, "Forbidden")])
async def test_client_errors_fail_at_once(server: Server, status: int, phrase: str) -> None:
    url = server.on("/feed", Reply(status))

    with pytest.raises(SourceError) as caught:
        await fetch(FetchRequest("arxiv", url))

    assert str(caught.value) == f"source 'arxiv': HTTP {status} {phrase} from {url}"
    assert caught.value.source == "arxiv"
    assert len(server.requests("/feed")) == 1


async def test_slow_server_times_out(server: Server) -> None:
    url = server.on("/feed", Reply(delay=1.0, body=b"late"))

    with pytest.raises(SourceTimeoutError) as caught:
        await fetch(FetchRequest("arxiv", url), settings(timeout_seconds=0.2, max_retries=1))

    assert caught.value.reason == f"timed out after 0.2 s from {url}; gave up after 2 attempts"
    assert isinstance(caught.value, TimeoutError)
    assert len(server.requests("/feed")) == 2


async def test_network_error_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed"

    with pytest.raises(SourceError, match=r"network error from .*ConnectError.*; gave up after 3 attempts$"):
        await fetch(FetchRequest("arxiv", url))


@pytest.mark.parametrize("framing", ["length", "close", "chunked"])
async def test_oversize_body_is_refused_without_downloading_it(server: Server, framing: Framing) -> None:
    total = 50_000_000
    url = server.on("/big", Reply(stream_bytes=total, framing=framing))
    started = time.monotonic()

    with pytest.raises(SourceError, match=r"response larger than 100000 bytes from http://"):
        await fetch(FetchRequest("arxiv", url), settings(max_bytes=100_000))

    assert time.monotonic() - started < 1.0  # sending it all takes the server over 1.5 s
    assert server.stream_stopped.wait(5)
    assert server.streamed[0] < total // 5


async def test_oversize_content_length_is_refused_before_the_body(server: Server) -> None:
    url = server.on("/big", Reply(stream_bytes=50_000_000, body_delay=2.0))
    started = time.monotonic()

    with pytest.raises(SourceError, match=r"response larger than 100000 bytes from http://"):
        await fetch(FetchRequest("arxiv", url), settings(max_bytes=100_000, timeout_seconds=1.0))

    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(("size", "ok"), [(1000, True), (1001, False)])
async def test_max_bytes_boundary(server: Server, size: int, ok: bool) -> None:
    url = server.on("/feed", Reply(body=b"x" * size))

    [result] = await fetch_all([FetchRequest("arxiv", url)], settings=settings(max_bytes=1000))

    assert isinstance(result, FetchResponse) is ok


async def test_same_host_is_paced_other_hosts_are_not(server: Server, other_server: Server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    paced = settings(per_host_delay_seconds=0.2)
    urls = [server.on(f"/{n}", Reply(body=b"a")) for n in range(3)]
    other = other_server.on("/x", Reply(body=b"b"))
    starts: dict[str, list[float]] = {}  # when the pacer let each request start, per host: the cause itself
    real_wait = HostPacer.wait

    async def wait(pacer: HostPacer, url: str) -> None:
        await real_wait(pacer, url)
        starts.setdefault(host_key(url), []).append(pacer._last_start[host_key(url)])

    monkeypatch.setattr(HostPacer, "wait", wait)

    results = await fetch_all(
        [FetchRequest(f"s{n}", u) for n, u in enumerate([*urls, other])], settings=paced
    )

    assert all(isinstance(r, FetchResponse) for r in results)
    assert len(server.seen) == 3
    paced_starts = starts[host_key(urls[0])]
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(paced_starts))
    assert starts[host_key(other)][0] < paced_starts[1]  # not queued behind the paced host


async def test_host_key_names_scheme_host_and_port() -> None:
    assert host_key("https://export.arxiv.org/api/query") == host_key("https://EXPORT.arxiv.org:443/rss/cs")
    assert host_key("http://export.arxiv.org/") != host_key("https://export.arxiv.org/")
    assert host_key("http://127.0.0.1:8000/") != host_key("http://localhost:8000/")
    assert host_key("http://127.0.0.1:8000/") != host_key("http://127.0.0.1:8001/")


async def test_fetch_all_keeps_order_and_isolates_failures(server: Server) -> None:
    bad = server.on("/gone", Reply(404))
    good = server.on("/feed", Reply(body=b"ok"))
    requests = [FetchRequest("bad", bad), FetchRequest("good", good), FetchRequest("ftp", "ftp://x/y")]

    async with new_client(FAST) as client:
        results = await fetch_all(requests, settings=FAST, client=client)
        assert not client.is_closed  # a caller's client stays the caller's to close

    assert [type(r) for r in results] == [SourceError, FetchResponse, SourceError]
    assert [getattr(r, "source", None) for r in results] == ["bad", "good", "ftp"]
    assert isinstance(results[1], FetchResponse)
    assert results[1].body == b"ok"


# --- local files and URL schemes ----------------------------------------------------------------------------


async def test_local_file_by_path_and_file_url(tmp_path: Path) -> None:
    path = tmp_path / "my feed.xml"
    path.write_bytes(b"<rss/>")

    by_path = await fetch(FetchRequest("local", str(path), etag='"x"', last_modified="yesterday"))
    by_url = await fetch(FetchRequest("local", path.as_uri()))

    assert by_path == FetchResponse(
        "local", str(path), b"<rss/>", not_modified=False, etag=None, last_modified=None
    )
    assert by_url.body == b"<rss/>"


async def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.xml"

    for url in (str(path), path.as_uri()):
        with pytest.raises(SourceError, match=f"^source 'local': file not found: {path}$"):
            await fetch(FetchRequest("local", url))


async def test_local_file_over_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(b"x" * 11)

    with pytest.raises(SourceError, match=f"file larger than 10 bytes: {path}$"):
        await fetch(FetchRequest("local", str(path)), settings(max_bytes=10))


async def test_unsupported_scheme_and_relative_path() -> None:
    with pytest.raises(SourceError, match=r"unsupported URL scheme 'ftp' in ftp://example\.org/feed"):
        await fetch(FetchRequest("odd", "ftp://example.org/feed"))
    with pytest.raises(SourceError, match=r"not a URL or absolute path: 'feeds/x\.xml'"):
        await fetch(FetchRequest("odd", "feeds/x.xml"))


# --- Retry-After --------------------------------------------------------------------------------------------


async def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert _retry_after_seconds("120", now=now) == 120
    assert _retry_after_seconds("Thu, 01 Jan 2026 12:01:30 GMT", now=now) == 90
    assert _retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert _retry_after_seconds(" 7 ", now=now) == 7
    assert _retry_after_seconds("soon", now=now) is None
    assert _retry_after_seconds("", now=now) is None
    assert _retry_after_seconds(None, now=now) is None
