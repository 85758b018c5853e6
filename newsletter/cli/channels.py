"""`channels list`, `channels test NAME`, `channels resume NAME`: the operator's view of the chat channels."""

from __future__ import annotations

import click

from newsletter.cli.app import App, console, pass_app
from newsletter.cli.output import term


@click.group()
def channels() -> None:
    """Chat channels that receive each edition through Apprise (docs/channels.md)."""


@channels.command("list")
@pass_app
def list_channels(app: App) -> None:
    """Each channel: its frequency and topics, whether it is paused and why, and its last result."""
    from newsletter.usecases.channels import statuses

    settings = app.settings
    if not settings.channels:
        click.echo("no [[channels]] configured (docs/channels.md)")
        return
    for channel, status in statuses(settings, app.open_store().engine):
        topics = ", ".join(channel.topics) or "all topics"
        state = f"PAUSED: {status.paused_reason}" if status and status.paused_reason else "active"
        last = (f"{status.last_result} ({status.last_at:%Y-%m-%d %H:%M} UTC)"
                if status and status.last_result and status.last_at else "never posted")
        console.print(f"{term(channel.name)}: {channel.frequency}, {term(topics)}, url from ${channel.url_env}; "
                      f"{term(state)}; last: {term(last)}", highlight=False, soft_wrap=True)


@channels.command("test")
@click.argument("name")
@pass_app
def test_channel(app: App, name: str) -> None:
    """Post a short test message to channel NAME now (no edition, no ledger row)."""
    from newsletter.errors import NewsletterError
    from newsletter.usecases.channels import post_test_message

    outcome = post_test_message(app.settings, app.open_store().engine, name, clock=app.now)
    if outcome.result != "sent":
        raise NewsletterError(f"channel {name!r}: test message {outcome.result}: {outcome.message}")
    click.echo(f"channel {name}: test message posted ({outcome.message})")


@channels.command("resume")
@click.argument("name")
@pass_app
def resume(app: App, name: str) -> None:
    """Lift the pause of channel NAME (after fixing its URL); the next `send` posts what it holds."""
    from newsletter.storage.channels import ChannelLedger
    from newsletter.usecases.channels import find_channel

    find_channel(app.settings, name)
    if ChannelLedger(app.open_store().engine).resume(name, now=app.now()):
        click.echo(f"channel {name}: resumed; the next `newsletter send` posts its pending editions")
    else:
        click.echo(f"channel {name}: was not paused")
