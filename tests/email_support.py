"""Shared set-up for the edition and email tests: real fixture feeds, a fixed clock, a fixed secret."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner

from newsletter.config import Settings, load_settings
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.usecases.fetch import fetch_sources
from tests.conftest import fixture_path, write_config

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)
SECRET = "golden-test-secret-0123456789"
TOKEN_TIME = 1777276800  # 2026-04-27 08:00 UTC: tokens carry a timestamp; fixed, they are reproducible
POSTAL = "Test Papers, 1 Example Road, Springfield, OR 97477, USA"

FIXTURE_SOURCES = [
    ("arxiv-cs-ai", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml"))),
    ("arxiv-cs-cl", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.CL_2026-04-27.xml"))),
    ("arxiv-cs-lg", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.LG_2026-04-27.xml"))),
    ("hf-daily", "hf-daily", str(fixture_path("hf_daily_papers/sotawhat_hf_daily_papers_2026-06-12.json"))),
]


def email_settings(folder: Path, *, email: str = "", sources: list[tuple[str, str, str]] | None = None) -> Settings:
    """The test config with the real fixture feeds and an [email] table (``email`` adds keys to it)."""
    extra = f'[email]\npostal_address = "{POSTAL}"\n{email}\n'
    return load_settings(write_config(folder, FIXTURE_SOURCES if sources is None else sources, extra=extra))


def stores(settings: Settings) -> tuple[PaperStore, EditionStore]:
    engine = open_database(settings.newsletter.database_url)
    return PaperStore(engine), EditionStore(engine)


def fetch(settings: Settings, store: PaperStore, *names: str, now: datetime = NOW) -> None:
    asyncio.run(fetch_sources(settings, store, names=names, now=now))


def fix_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed signing key and token timestamp, so signed links are the same on every run."""
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: TOKEN_TIME)
