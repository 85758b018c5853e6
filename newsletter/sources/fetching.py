"""Download source documents: bytes out, nothing parsed, so feed parsing stays pure and tests can feed files.

Sources are fetched concurrently, but politely: requests to one host are spaced out (arXiv asks for 3 s),
unchanged feeds cost a 304 thanks to conditional GET, and a busy server is retried with backoff rather
than hammered. Every failure becomes a SourceError for that source alone, so one bad feed never stops the
others. ``timeout_seconds`` bounds each whole attempt (connect, headers and body), not each read, so a
server dribbling one byte at a time cannot hold a fetch; validators are only kept when safe to replay.
Bodies are decoded and redirects followed by ``newsletter.sources.bounded``, never by httpx: a stacked
content coding cannot inflate past ``max_bytes``, and a redirect cannot lead to loopback or private hosts.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from newsletter.config import FetchSettings
from newsletter.errors import SourceError, SourceTimeoutError
from newsletter.sources.bounded import (
    ACCEPT_ENCODING,
    MAX_REDIRECTS,
    TooLarge,
    UnsafeResponse,
    check_redirect,
    read_decoded,
)
from newsletter.sources.sanitize import cap, clean_text, safe_validator

log = logging.getLogger(__name__)

_RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class FetchRequest:
    source: str
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResponse:
    """What a source sent; ``etag``/``last_modified`` are for the next conditional GET (kept on a 304)."""

    source: str
    url: str
    body: bytes | None
    not_modified: bool
    etag: str | None
    last_modified: str | None
    content_type: str | None = None


class HostPacer:
    """Spaces request starts to one host (scheme, host, port) at least ``delay_seconds`` apart.

    Each host has its own lock, so a slow or rate-limited host never holds up the others.
    """

    def __init__(self, delay_seconds: float) -> None:
        self.delay_seconds = delay_seconds
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_start: dict[str, float] = {}

    async def wait(self, url: str) -> None:
        """Return once a request to ``url``'s host may start, and count it as started now."""
        key = host_key(url)
        async with self._locks.setdefault(key, asyncio.Lock()):
            last = self._last_start.get(key)
            if last is not None:
                remaining = last + self.delay_seconds - time.monotonic()
                if remaining > 0:
                    await asyncio.sleep(remaining)
            self._last_start[key] = time.monotonic()


def host_key(url: str) -> str:
    """Name the server a URL reaches; default ports are spelled out so ``:443`` and no port are one host."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{parts.hostname or ''}:{port}"


def new_client(settings: FetchSettings) -> httpx.AsyncClient:
    """The client ``fetch_all`` uses when given none; callers of ``fetch_one`` can share the same setup."""
    return httpx.AsyncClient(
        follow_redirects=False,  # followed by _exchange, each target checked (bounded.check_redirect)
        timeout=httpx.Timeout(settings.timeout_seconds),
        headers={"User-Agent": settings.user_agent},
    )


async def fetch_all(
    requests: Sequence[FetchRequest], *, settings: FetchSettings, client: httpx.AsyncClient | None = None
) -> list[FetchResponse | SourceError]:
    """Fetch every source at once; a failed source leaves its SourceError in its slot, in request order."""
    pacer = HostPacer(settings.per_host_delay_seconds)

    answers: list[FetchResponse | SourceError] = []

    async def one(request: FetchRequest, client: httpx.AsyncClient) -> int:
        try:
            answers.append(await fetch_one(request, settings=settings, client=client, pacer=pacer))
        except SourceError as exc:
            answers.append(exc)
        return len(answers) - 1

    async def gathered(client: httpx.AsyncClient) -> list[FetchResponse | SourceError]:
        # the answers are handed back in a list of their own, the tasks keep only an index: the caller's task
        # holds the gathering future (and so its tasks' results) until the caller's next await, which for
        # `fetch` comes after every document was parsed; it must not keep every document alive meanwhile
        slots = await asyncio.gather(*(one(r, client) for r in requests))
        return [answers[slot] for slot in slots]

    if client is not None:
        return await gathered(client)
    async with new_client(settings) as own:
        return await gathered(own)


async def fetch_one(
    request: FetchRequest, *, settings: FetchSettings, client: httpx.AsyncClient, pacer: HostPacer
) -> FetchResponse:
    """Fetch one source from the network or the disk; raise SourceError naming what went wrong."""
    parts = urllib.parse.urlsplit(request.url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return await _fetch_http(request, settings=settings, client=client, pacer=pacer)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceError(request.source, f"file URL on another host is not supported: {request.url}")
        return await _read_file(request, Path(urllib.request.url2pathname(parts.path)), settings.max_bytes)
    if not scheme and Path(request.url).is_absolute():
        return await _read_file(request, Path(request.url), settings.max_bytes)
    if not scheme:
        raise SourceError(
            request.source, f"not a URL or absolute path: {request.url!r} (expected http(s)://, file:// or /)"
        )
    raise SourceError(
        request.source, f"unsupported URL scheme {scheme!r} in {request.url} (use http(s) or file)"
    )


async def _read_file(request: FetchRequest, path: Path, max_bytes: int) -> FetchResponse:
    """Local feeds skip pacing and conditional GET: reading a file again costs nothing worth saving."""

    def read() -> bytes:
        if path.stat().st_size > max_bytes:
            raise SourceError(request.source, f"file larger than {max_bytes} bytes: {path}")
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)  # the file may have grown since stat
        if len(data) > max_bytes:
            raise SourceError(request.source, f"file larger than {max_bytes} bytes: {path}")
        return data

    try:
        body = await asyncio.to_thread(read)
    except FileNotFoundError:
        raise SourceError(request.source, f"file not found: {path}") from None
    except OSError as exc:
        raise SourceError(request.source, f"cannot read {path}: {exc.strerror or exc}") from None
    return FetchResponse(request.source, request.url, body, not_modified=False, etag=None, last_modified=None)


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth repeating; ``retry_after`` is the server's own wish, in seconds."""

    reason: str
    retry_after: float | None = None
    timed_out: bool = False


async def _fetch_http(
    request: FetchRequest, *, settings: FetchSettings, client: httpx.AsyncClient, pacer: HostPacer
) -> FetchResponse:
    attempt = 0
    while True:
        await pacer.wait(request.url)
        outcome = await _attempt(request, settings=settings, client=client)
        if isinstance(outcome, FetchResponse):
            return outcome
        if attempt == settings.max_retries:
            made = attempt + 1
            reason = f"{outcome.reason}; gave up after {made} attempt{'s' if made > 1 else ''}"
            if outcome.timed_out:
                raise SourceTimeoutError(request.source, reason)
            raise SourceError(request.source, reason)
        delay = outcome.retry_after
        if delay is None:
            delay = settings.backoff_seconds * 2**attempt
            delay += random.uniform(0, 0.1 * delay)  # so sources failing together do not retry together
        attempt += 1
        log.warning(
            "source %r: %s; retry %d of %d in %.1f s",
            request.source,
            outcome.reason,
            attempt,
            settings.max_retries,
            delay,
        )
        await asyncio.sleep(delay)


async def _attempt(
    request: FetchRequest, *, settings: FetchSettings, client: httpx.AsyncClient
) -> FetchResponse | _Retry:
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            return await _exchange(request, settings=settings, client=client)
    except TimeoutError:
        return _Retry(f"timed out after {settings.timeout_seconds:g} s from {request.url}", timed_out=True)


async def _exchange(
    request: FetchRequest, *, settings: FetchSettings, client: httpx.AsyncClient
) -> FetchResponse | _Retry:
    headers: dict[str, str] = {"Accept-Encoding": ACCEPT_ENCODING}
    etag = safe_validator(request.etag)  # a stored validator from before they were checked may be unsafe
    if etag:
        headers["If-None-Match"] = etag
    last_modified = safe_validator(request.last_modified)
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    url = request.url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
                if response.is_redirect and "Location" in response.headers:
                    url = str(response.url.join(response.headers["Location"]))
                    await check_redirect(url, allow_private=settings.allow_private_redirects)
                    continue
                return await _answer(request, response, settings=settings, etag=etag, last_modified=last_modified)
        raise SourceError(request.source, f"more than {MAX_REDIRECTS} redirects from {request.url}")
    except UnsafeResponse as exc:
        raise SourceError(request.source, f"{request.url}: {exc}") from None
    except httpx.TimeoutException:
        return _Retry(f"timed out after {settings.timeout_seconds:g} s from {request.url}", timed_out=True)
    except httpx.TransportError as exc:
        return _Retry(f"network error from {request.url}: {_reason(exc)}")
    except httpx.InvalidURL as exc:
        raise SourceError(request.source, f"invalid URL {request.url}: {exc}") from None
    except httpx.RequestError as exc:  # bad compressed data, redirect loops: repeating will not help
        raise SourceError(request.source, f"request to {request.url} failed: {_reason(exc)}") from None


async def _answer(request: FetchRequest, response: httpx.Response, *, settings: FetchSettings, etag: str | None,
                  last_modified: str | None) -> FetchResponse | _Retry:
    """What one (non-redirect) response means: a body, a 304, a retry or a SourceError."""
    reason_phrase = cap(clean_text(response.reason_phrase), 100)  # the server's words, in our messages
    phrase = f" {reason_phrase}" if reason_phrase else ""
    status = f"HTTP {response.status_code}{phrase} from {request.url}"
    new_etag = safe_validator(response.headers.get("ETag"))
    new_last_modified = safe_validator(response.headers.get("Last-Modified"))
    if response.status_code == 304:
        return FetchResponse(
            request.source,
            request.url,
            None,
            not_modified=True,
            etag=new_etag or etag,
            last_modified=new_last_modified or last_modified,
        )
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = None
        if response.status_code in _RETRY_AFTER_STATUSES:
            retry_after = _retry_after_seconds(
                response.headers.get("Retry-After"), now=datetime.now(UTC)
            )
        if retry_after is not None and retry_after > settings.max_retry_after_seconds:
            raise SourceError(
                request.source,
                f"{status} asks to retry after {retry_after:g} s, longer than "
                f"max_retry_after_seconds ({settings.max_retry_after_seconds:g} s)",
            )
        return _Retry(status, retry_after=retry_after)
    if not response.is_success:
        raise SourceError(request.source, status)
    body = await _read_capped(response, request, settings.max_bytes)
    return FetchResponse(
        request.source,
        request.url,
        body,
        not_modified=False,
        etag=new_etag,
        last_modified=new_last_modified,
        content_type=response.headers.get("Content-Type"),
    )


async def _read_capped(response: httpx.Response, request: FetchRequest, max_bytes: int) -> bytes:
    """Stop past ``max_bytes`` (decoded) so a huge, endless or inflating response never sits in memory."""
    too_big = SourceError(request.source, f"response larger than {max_bytes} bytes from {request.url}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_big
    try:
        return await read_decoded(response.aiter_raw(), response.headers.get("Content-Encoding"), max_bytes)
    except TooLarge:
        raise too_big from None

def _retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Read Retry-After (delta-seconds or HTTP-date); None when absent or unreadable, so backoff applies."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _reason(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
