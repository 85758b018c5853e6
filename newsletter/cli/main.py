"""The `newsletter` command: thin click commands over library functions.

Every command parses its options, calls one library function and prints the result. Library errors
(``NewsletterError``) become a one-line ``Error: …`` and exit code 1, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter import __version__
from newsletter.cli.edition import edition as edition_group
from newsletter.cli.subscribers import subscribers as subscribers_group
from newsletter.cli.subscribers import web as web_command
from newsletter.cli.topics import evaluate as topics_evaluate
from newsletter.cli.topics import suggest as topics_suggest
from newsletter.config import CONFIG_ENV, DEFAULT_CONFIG
from newsletter.logs import configure_logging

if TYPE_CHECKING:
    pass

from newsletter.cli import admin, admin_tokens, channels, deliveries, inbound, pipeline, sending, service, webhooks
from newsletter.cli.app import App, NewsletterGroup


@click.group(cls=NewsletterGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    default=DEFAULT_CONFIG,
    show_default=True,
    help=f"Config file (also read from ${CONFIG_ENV}).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log details of every step.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines for people, or JSON lines for a log collector.")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: bool, log_format: str) -> None:
    """Trending-papers newsletter: fetch papers, group them by topic, email them to subscribers."""
    configure_logging(level=logging.INFO if verbose else logging.WARNING, json_lines=log_format == "json")
    ctx.obj = App(config_path)


for command in (pipeline.fetch, pipeline.papers, pipeline.topics, sending.preview, sending.send, sending.demo,
                service.serve, service.worker, service.status, subscribers_group, web_command, inbound.inbound):
    cli.add_command(command)
cli.add_command(edition_group)
cli.add_command(deliveries.deliveries)
cli.add_command(channels.channels)
cli.add_command(admin.admin)
for command in admin_tokens.COMMANDS:
    admin.admin.add_command(command)
cli.add_command(webhooks.webhooks)
pipeline.topics.add_command(topics_evaluate)
pipeline.topics.add_command(topics_suggest)


def main() -> None:
    cli(prog_name="newsletter")
