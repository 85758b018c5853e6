"""``[[webhooks]]``: HTTP endpoints that receive signed JSON events (docs/webhooks.md)."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.config.checks import check_http_url, check_non_empty, check_positive
from newsletter.config.declare import setting

EVENTS = (
    "subscriber.created",
    "subscriber.confirmed",
    "subscriber.resubscribed",
    "subscriber.unsubscribed",
    "subscriber.bounced",
    "subscriber.complained",
    "edition.built",
    "edition.sent",
)
"""Every event type a webhook can receive (docs/webhooks.md says when each happens)."""


def check_event(value: str) -> str | None:
    return None if value in EVENTS else f"one of the event types {', '.join(EVENTS)}"


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    url: str = setting(help="Where the events are POSTed (an http(s) URL).", check=check_http_url)
    secret_env: str = setting(
        help="Environment variable holding the endpoint's signing secret in the Standard Webhooks form "
             "`whsec_<base64>`; a secret is never written in this file.", check=check_non_empty)
    events: tuple[str, ...] = setting(EVENTS, "Event types the endpoint receives (default: every one).",
                                      check=check_event)
    retry_seconds: float = setting(
        30.0, "Seconds before the first retry of a failed delivery; each further retry waits twice as long, at "
              "most an hour.", check=check_positive)
    give_up_hours: float = setting(72.0, "Hours after which an event still not delivered is given up "
                                         "(`webhooks list` shows it as failed).", check=check_positive)
    timeout_seconds: float = setting(10.0, "Seconds to wait for the endpoint's answer.", check=check_positive)
