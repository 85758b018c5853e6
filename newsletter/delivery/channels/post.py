"""Post one chat message through Apprise and classify what the service answered, like an SMTP reply.

Apprise says only whether a post worked. What the service answered (the HTTP status and its
``Retry-After``) is read from the HTTP exchanges of the post: while a post runs, every response that
``requests`` receives in this process is recorded (one post at a time, under a lock).

| answer | outcome |
| --- | --- |
| 2xx (Apprise reports success) | ``sent`` |
| 429 | ``deferred`` until ``Retry-After`` (seconds or an HTTP date; else the backoff) |
| 401, 403, 404, 410 | ``paused``: the webhook or token was revoked; the channel is paused with this reason |
| 408, 5xx | ``deferred`` with backoff |
| another 4xx | ``failed`` |
| could not connect | ``deferred`` (nothing reached the service) |
| timeout or dropped connection once the request was sent | ``ambiguous`` (the service may have posted it) |

Apprise's own log lines are silenced: they can carry the channel's URL, which holds its secret.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import apprise
import requests

from newsletter.errors import ConfigError

Result = Literal["sent", "deferred", "failed", "ambiguous", "paused"]
REVOKED = frozenset({401, 403, 404, 410})


@dataclass(frozen=True)
class Exchange:
    status: int | None
    retry_after: str | None
    error: BaseException | None = None


@dataclass(frozen=True)
class PostOutcome:
    result: Result
    code: int | None
    message: str
    retry_after_seconds: float | None = None


@dataclass(frozen=True)
class ChannelResult:
    """What one channel's row of an edition came to in one `send`."""

    channel: str
    state: str
    message: str
    papers: int = 0


_lock = threading.Lock()
_recording: list[Exchange] | None = None
_installed = False


def _install_recorder() -> None:
    """Wrap ``requests.Session.send`` once, so a post's HTTP answers can be read after Apprise returns."""
    global _installed
    if _installed:
        return
    original: Callable[..., Any] = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        seen = _recording
        try:
            response: requests.Response = original(self, request, **kwargs)
        except requests.RequestException as error:
            if seen is not None:
                seen.append(Exchange(status=None, retry_after=None, error=error))
            raise
        if seen is not None:
            seen.append(Exchange(status=response.status_code, retry_after=response.headers.get("Retry-After")))
        return response

    requests.Session.send = send  # type: ignore[method-assign]
    _installed = True


def _quiet_apprise() -> None:
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)


def _asset() -> apprise.AppriseAsset:
    # Nothing of a post is cached on disk (Apprise's persistent store would keep tokens under ~/.local).
    return apprise.AppriseAsset(storage_mode="memory")


@dataclass(frozen=True)
class Service:
    """One channel's Apprise plugin and its limits."""

    plugin: Any
    body_limit: int
    title_limit: int
    name: str


def service(url: str) -> Service:
    """The Apprise plugin for this URL; a ConfigError (without the URL, which holds a secret) when none fits."""
    _quiet_apprise()
    plugin = apprise.Apprise.instantiate(url, asset=_asset(), suppress_exceptions=True)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
        raise ConfigError(f"not an Apprise URL this version can post to (scheme {scheme!r}); see docs/channels.md")
    # A service with no title of its own (title_maxlen 0) counts the title in the body.
    return Service(plugin=plugin, body_limit=int(plugin.body_maxlen), title_limit=int(plugin.title_maxlen),
                   name=str(getattr(plugin, "service_name", type(plugin).__name__)))


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify(ok: bool, exchanges: list[Exchange], *, now: datetime) -> PostOutcome:
    answered = [e for e in exchanges if e.status is not None]
    last = exchanges[-1] if exchanges else None
    if ok:
        code = answered[-1].status if answered else None
        return PostOutcome("sent", code, f"{code} accepted" if code else "accepted")
    if last is None:
        return PostOutcome("failed", None, "Apprise refused the message before any request (see the log)")
    if last.status is None:
        error = last.error
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}".rstrip(": ")
        if isinstance(error, requests.ConnectionError) and not isinstance(error, requests.ReadTimeout):
            return PostOutcome("deferred", None, f"could not connect: {reason}")
        return PostOutcome("ambiguous", None, f"no answer after the request was sent: {reason}")
    code = last.status
    if code == 429:
        wait = retry_after_seconds(last.retry_after, now=now)
        shown = f" (Retry-After {last.retry_after.strip()})" if last.retry_after else ""
        return PostOutcome("deferred", code, f"429 rate limited{shown}", retry_after_seconds=wait)
    if code in REVOKED:
        return PostOutcome("paused", code, f"{code}: the service refused the channel's URL (revoked or deleted "
                                           "webhook or token); fix url_env, then `newsletter channels resume`")
    if code == 408 or code >= 500:
        return PostOutcome("deferred", code, f"{code} from the service")
    return PostOutcome("failed", code, f"{code} from the service")


def post(target: Service, *, title: str, body: str, now: Callable[[], datetime]) -> PostOutcome:
    """Post once (no retry inside: a retry is the ledger's decision) and classify the answer."""
    global _recording
    _install_recorder()
    with _lock:
        exchanges: list[Exchange] = []
        _recording = exchanges
        try:
            ok = bool(target.plugin.notify(body=body, title=title, body_format=apprise.NotifyFormat.MARKDOWN))
        finally:
            _recording = None
    return classify(ok, exchanges, now=now())
