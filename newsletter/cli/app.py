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
from subscribers.errors import SubscribersError

if TYPE_CHECKING:
    from newsletter.storage.papers import PaperStore



class App:
    """What every command needs, loaded on first use so `--help` works without a config file."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def store(self) -> PaperStore:
        from newsletter.storage.db import open_database  # SQLAlchemy and Alembic: not needed for --help
        from newsletter.storage.papers import PaperStore

        return PaperStore(open_database(self.settings.newsletter.database_url))

    def now(self) -> datetime:
        return datetime.now(UTC)


class NewsletterGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NewsletterError, SubscribersError) as error:
            raise click.ClickException(str(error)) from None


pass_app = click.make_pass_decorator(App)
console = Console()
