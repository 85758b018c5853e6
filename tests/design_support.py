"""The largest edition of the bundled feeds, as the design tests and the screenshot test render it.

The shipped offline example (examples/offline.toml: its feed snapshots and 6 topics) with the production
defaults: 10 papers per topic, 600-character abstracts. An all-topics reader gets 53 papers (some topics
have fewer than 10 that day).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from newsletter.config import Settings, load_settings
from newsletter.editions.build import build_edition
from newsletter.editions.selection import Selection, select
from newsletter.records.editions import Edition
from newsletter.rendering.links import recipient_links, signer_from_settings
from newsletter.rendering.render import RenderedVariant, RenderEnvironment, render_variant
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from tests.conftest import ROOT
from tests.email_support import NOW, fetch


def offline_settings_in(folder: Path, **email: object) -> Settings:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    path = folder / "offline.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path)
    return dataclasses.replace(settings, email=dataclasses.replace(settings.email, **email))  # type: ignore[arg-type]


def offline_edition(settings: Settings) -> Edition:
    engine = open_database(settings.newsletter.database_url)
    store, editions = PaperStore(engine), EditionStore(engine)
    fetch(settings, store)
    return build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))


def topic_selection(settings: Settings, edition: Edition, topics: int) -> Selection:
    slugs = [t.slug for t in settings.topics if t.slug in edition.topic_map][:topics]
    return select(edition, slugs, max_per_topic=settings.email.max_papers_per_topic)


def personalised(settings: Settings, edition: Edition, variant: RenderedVariant, *,
                 name: str = "Ada Lovelace") -> tuple[str, str]:
    recipient = recipient_links(settings, signer_from_settings(settings), subscriber_id=1,
                                email="ada@example.org", name=name, edition_slug=edition.slug)
    return variant.personalise(recipient)


def render(settings: Settings, selection: Selection) -> RenderedVariant:
    return render_variant(selection, settings=settings, environment=RenderEnvironment(settings))
