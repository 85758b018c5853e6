"""Delivering the webhook outbox: sign each event in the Standard Webhooks scheme and POST it, in order.

Each ``[[webhooks]]`` endpoint gets its pending events oldest first. A delivery that fails (no answer, a
non-2xx status) is tried again after ``retry_seconds``, then twice as long each time (at most an hour),
until the waits add up to ``give_up_hours``; until then the later events of the same subject (one
subscriber, one edition) wait behind it, so a receiver sees each subject's events in the order they
happened, while other subjects go on. Delivery is at least once: a receiver that answered too late may
get an event again, with the same ``webhook-id``, and should ignore ids it has seen.

``deliver_round`` is one pass (`newsletter webhooks deliver`); ``run_webhooks`` repeats it while
`newsletter serve` or `newsletter web` runs, in a thread of its own, so neither a web request nor a send
waits for a receiver.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks.webhooks import Webhook

from newsletter import __version__
from newsletter.config import Settings
from newsletter.config.webhooks import WebhookSettings
from newsletter.errors import WebhookError
from newsletter.storage import webhook_events
from newsletter.storage.runs import Lease
from newsletter.storage.webhook_outbox import Due, WebhookOutbox

log = logging.getLogger(__name__)

MAX_WAIT = 3600.0
LEASE_NAME = "webhooks"
LEASE_DURATION = timedelta(seconds=30)
"""A delivering process renews its lease every pass (about every second); a dead one's lapses after this."""
MIN_SECRET_BYTES = 24
"""The Standard Webhooks specification asks for 24 to 64 random bytes."""
POLL_SECONDS = 1.0


def attach(settings: Settings, engine: Engine) -> None:
    """Record webhook events for changes made through ``engine`` (a no-op without ``[[webhooks]]``)."""
    webhook_events.attach(engine, [(w.url, w.events) for w in settings.webhooks])


def signer(webhook: WebhookSettings) -> Webhook:
    """The endpoint's signer, from the secret in the environment variable ``secret_env`` names."""
    secret = os.environ.get(webhook.secret_env, "")
    if not secret.startswith("whsec_"):
        problem = "is not set" if not secret else "does not hold a secret of the form whsec_<base64>"
        raise WebhookError(f"the signing secret of the webhook {webhook.url} (environment variable "
                           f"{webhook.secret_env}) {problem}")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:  # binascii.Error
        raise WebhookError(f"the signing secret in {webhook.secret_env} is not base64 after whsec_") from None
    if len(key) < MIN_SECRET_BYTES:
        raise WebhookError(f"the signing secret in {webhook.secret_env} is {len(key)} bytes; use at least "
                           f"{MIN_SECRET_BYTES} random bytes (docs/webhooks.md shows how to make one)")
    return Webhook(key)


def wait_after(webhook: WebhookSettings, attempts: int) -> float:
    """Seconds before the next try once ``attempts`` tries failed."""
    return float(min(webhook.retry_seconds * 2.0 ** max(attempts - 1, 0), MAX_WAIT))


def gives_up(webhook: WebhookSettings, attempts: int) -> bool:
    """Whether the waits after ``attempts`` failed tries add up to ``give_up_hours``."""
    return sum(wait_after(webhook, n) for n in range(1, attempts + 1)) >= webhook.give_up_hours * 3600


@dataclass
class Round:
    """What one pass did, over every endpoint."""

    delivered: int = 0
    failed: int = 0
    given_up: int = 0
    waiting: int = 0
    next_due: datetime | None = None


def _post(client: httpx.Client, webhook: WebhookSettings, sign: Webhook, item: Due, now: datetime) -> str | None:
    """POST one event; None when the endpoint took it (2xx), else why not in a few words."""
    headers = {
        "content-type": "application/json",
        "user-agent": f"newsletter-webhooks/{__version__}",
        "webhook-id": item.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign.sign(item.event_id, now, item.payload),
    }
    try:
        response = client.post(webhook.url, content=item.payload.encode("utf-8"), headers=headers,
                               timeout=webhook.timeout_seconds)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"[:300]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def deliver_endpoint(outbox: WebhookOutbox, webhook: WebhookSettings, client: httpx.Client, *,
                     clock: Callable[[], datetime], result: Round) -> None:
    sign = signer(webhook)
    held: set[str] = set()
    for item in outbox.due(webhook.url):
        now = clock()
        if item.subject in held:
            result.waiting += 1
            continue
        if item.attempts and item.next_attempt_at > now:
            held.add(item.subject)
            result.waiting += 1
            result.next_due = min(filter(None, (result.next_due, item.next_attempt_at)))
            continue
        error = _post(client, webhook, sign, item, now)
        if error is None:
            outbox.delivered(item.event, webhook.url, now=clock())
            result.delivered += 1
            continue
        attempts = item.attempts + 1
        if gives_up(webhook, attempts):
            log.error("webhook %s: gave up %s %s after %d attempts: %s", webhook.url, item.type, item.event_id,
                      attempts, error)
            outbox.failed(item.event, webhook.url, error=error, retry_at=None)
            result.given_up += 1
            continue
        retry_at = now + timedelta(seconds=wait_after(webhook, attempts))
        log.warning("webhook %s: %s %s not delivered (%s); next try at %s", webhook.url, item.type, item.event_id,
                    error, retry_at.isoformat(timespec="seconds"))
        outbox.failed(item.event, webhook.url, error=error, retry_at=retry_at)
        held.add(item.subject)
        result.failed += 1
        result.next_due = min(filter(None, (result.next_due, retry_at)))


def delivery_lease(engine: Engine) -> Lease:
    """One process delivers at a time (two `serve`, `serve` and `webhooks deliver`): else a receiver could get
    an event twice at once, or a subscriber's events out of order."""
    return Lease(engine, LEASE_NAME, holder=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
                 duration=LEASE_DURATION)


def deliver_round(settings: Settings, engine: Engine, *, clock: Callable[[], datetime] | None = None,
                  client: httpx.Client | None = None, lease: Lease | None = None) -> Round | None:
    """Try every due delivery of every endpoint once; None when another process holds the delivery lease.

    ``lease`` is kept (renewed) by a caller that delivers again and again; without it, one is taken for this
    pass and given back after it."""
    clock = clock or (lambda: datetime.now(UTC))
    held = lease or delivery_lease(engine)
    if not held.acquire(now=clock()):
        return None
    result = Round()
    outbox = WebhookOutbox(engine)
    try:
        with contextlib.nullcontext(client) if client else httpx.Client(follow_redirects=False) as http:
            for webhook in settings.webhooks:
                deliver_endpoint(outbox, webhook, http, clock=clock, result=result)
    finally:
        if lease is None:
            held.release()
    return result


def check_secrets(settings: Settings) -> None:
    """Every endpoint's secret is there and well formed (else a WebhookError naming the variable)."""
    for webhook in settings.webhooks:
        signer(webhook)


async def run_webhooks(settings: Settings, engine: Engine) -> None:
    """Deliver the outbox until cancelled: a pass every second, in a worker thread."""
    lease = delivery_lease(engine)
    try:
        with httpx.Client(follow_redirects=False) as client:
            while True:
                try:
                    await asyncio.to_thread(deliver_round, settings, engine, client=client, lease=lease)
                except (SQLAlchemyError, WebhookError) as error:
                    log.error("webhook delivery: %s", error)
                await asyncio.sleep(POLL_SECONDS)
    finally:
        with contextlib.suppress(SQLAlchemyError):
            await asyncio.to_thread(lease.release)  # another process may deliver at once
