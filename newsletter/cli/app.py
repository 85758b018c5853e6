"""What every command shares: the lazily loaded settings and store, error handling, the console."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError
from newsletter.storage.db import is_new, open_database
from newsletter.storage.papers import PaperStore
from subscribers.errors import SubscribersError

if TYPE_CHECKING:
    pass



class App:
    """What every command needs, loaded on first use so `--help` works without a config file."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def store(self) -> PaperStore:
        url = self.settings.newsletter.database_url
        engine = open_database(url)
        if is_new(engine) and _running_command() in READ_ONLY_COMMANDS:
            shown = engine.url.render_as_string(hide_password=True)
            click.echo(f"warning: {shown} did not exist or was empty, so it is a new, empty database; is "
                       "[newsletter] database_url (or --config) mistyped?", err=True)
        return PaperStore(engine)

    def now(self) -> datetime:
        return datetime.now(UTC)


READ_ONLY_COMMANDS = frozenset({"status", "papers", "topics", "preview", "subscribers list", "subscribers show",
                                "subscribers export", "edition show"})
"""Commands that only read: a new, empty database there is more likely a typo than a first run."""


def _running_command() -> str:
    context = click.get_current_context(silent=True)
    return " ".join(context.command_path.split()[1:]) if context is not None else ""


class NewsletterGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NewsletterError, SubscribersError) as error:
            raise click.ClickException(str(error)) from None


pass_app = click.make_pass_decorator(App)
console = Console()
