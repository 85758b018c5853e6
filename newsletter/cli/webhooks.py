"""`newsletter webhooks list|deliver`: the webhook outbox (docs/webhooks.md).

`serve` and `web` deliver the outbox by themselves; `webhooks deliver` is one pass by hand (after fixing a
receiver, or where neither runs), and `webhooks list` shows what was sent, what waits and why.
"""

from __future__ import annotations

import json

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.output import plain


@click.group()
def webhooks() -> None:
    """The webhook outbox: what was delivered to each [[webhooks]] endpoint, what waits, and why."""


@webhooks.command(name="list")
@click.option("--state", type=click.Choice(["pending", "delivered", "failed"]), help="Only deliveries in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: per-endpoint counts and the deliveries.")
@pass_app
def list_command(app: App, state: str | None, limit: int, as_json: bool) -> None:
    """Per endpoint: counts by state; then the newest deliveries with their event, attempts and last error."""
    from newsletter.storage.webhook_outbox import WebhookOutbox

    outbox = WebhookOutbox(app.open_store().engine)
    counts, rows = outbox.counts(), outbox.rows(limit=limit, state=state)
    if as_json:
        click.echo(json.dumps({"endpoints": counts, "deliveries": [
            {"event_id": r.event_id, "type": r.type, "subject": r.subject, "endpoint": r.endpoint, "state": r.state,
             "attempts": r.attempts, "created": r.created.isoformat(),
             "next_attempt_at": r.next_attempt_at.isoformat(),
             "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None, "last_error": r.last_error}
            for r in rows]}, indent=2))
        return
    configured = {w.url for w in app.settings.webhooks}
    for endpoint in sorted(configured | set(counts)):
        found = counts.get(endpoint, {"pending": 0, "delivered": 0, "failed": 0})
        note = "" if endpoint in configured else " (no longer in [[webhooks]]: not delivered)"
        click.echo(plain(f"{endpoint}: {found['delivered']} delivered, {found['pending']} pending, "
                         f"{found['failed']} failed{note}"))
    for r in rows:
        when = f"delivered {r.delivered_at:%Y-%m-%d %H:%M:%S}" if r.delivered_at else \
            f"next try {r.next_attempt_at:%Y-%m-%d %H:%M:%S}" if r.state == "pending" else "given up"
        error = f"; last error: {r.last_error}" if r.last_error else ""
        click.echo(plain(f"  {r.created:%Y-%m-%d %H:%M:%S} {r.type} {r.subject} → {r.endpoint}: {r.state} "
                         f"after {r.attempts} attempts, {when}{error}"))
    if not configured and not counts:
        click.echo("no [[webhooks]] configured (docs/webhooks.md)")


@webhooks.command()
@pass_app
def deliver(app: App) -> None:
    """Deliver what is due now, once, to every endpoint (`serve` and `web` do this every second)."""
    from newsletter.usecases.webhooks import check_secrets, deliver_round

    check_secrets(app.settings)
    result = deliver_round(app.settings, app.open_store().engine)
    if result is None:
        click.echo("another process (`serve` or `web`) is delivering the outbox now; nothing done")
        return
    click.echo(f"{result.delivered} delivered, {result.failed} failed (to be retried), {result.given_up} given up, "
               f"{result.waiting} waiting")
    if result.failed or result.given_up:
        raise click.exceptions.Exit(3)
