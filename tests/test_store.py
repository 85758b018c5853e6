"""One record per paper across fetches, versions and sources, through the real store: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from newsletter.config import Settings, load_settings
from newsletter.matching.refresh import refresh_matches
from newsletter.records.merge import merge_paper
from newsletter.records.papers import Paper
from newsletter.storage.db import metadata, open_database
from newsletter.storage.papers import PaperStore
from newsletter.usecases.fetch import fetch_sources
from subscribers.schema import metadata as subscriber_metadata
from tests.conftest import fixture_path, write_config

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("database_url")  # every test twice: SQLite, then the PostgreSQL server


def fetch(settings: Settings, store: PaperStore, *names: str, now: datetime = NOW) -> dict[str, tuple[int, ...]]:
    reports = asyncio.run(fetch_sources(settings, store, names=names, now=now))
    return {r.source: (r.fetched, r.new, r.updated, r.skipped, len(r.errors)) for r in reports}


def test_migrations_create_exactly_the_declared_schema(empty_database_url: str) -> None:
    engine = open_database(empty_database_url)
    open_database(empty_database_url)  # a second open is a no-op
    with engine.connect() as connection:
        # newsletter's tables and the subscriber domain's (own metadata, same migrations)
        assert compare_metadata(MigrationContext.configure(connection), [metadata, subscriber_metadata]) == []


def test_fetching_the_offline_example_twice_stores_each_paper_once(offline_settings: Settings) -> None:
    store = PaperStore(open_database(offline_settings.newsletter.database_url))
    first = fetch(offline_settings, store)
    assert first["arxiv-cs-ai"] == (3, 3, 0, 0, 0)
    assert first["arxiv-cs-cl-saturday"] == (0, 0, 0, 0, 0)
    assert first["hf-daily"] == (30, 30, 0, 0, 0)
    total = store.count_papers()
    assert total == sum(new for _, new, *_ in first.values())
    second = fetch(offline_settings, store, now=NOW + timedelta(hours=1))
    assert all(new == 0 and updated == 0 for _, new, updated, *_ in second.values())
    assert store.count_papers() == total
    assert store.get("2604.21935") is not None
    assert store.get("2604.21935").first_seen == NOW  # type: ignore[union-attr]


def test_a_new_version_updates_the_stored_paper(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(
            tmp_path,
            [
                ("v1", "arxiv-api", str(fixture_path("derived/arxiv_api_1111.2011v1.xml"))),
                ("v2", "arxiv-api", str(fixture_path("arxiv_api/arxivpy_2016_id_list_1111.2011v2.xml"))),
            ],
        )
    )
    store = PaperStore(open_database(settings.newsletter.database_url))
    assert fetch(settings, store, "v1")["v1"] == (1, 1, 0, 0, 0)
    stored = store.get("1111.2011")
    assert stored is not None
    assert stored.version == 1
    assert "(first version)" in stored.title
    later = NOW + timedelta(days=1)
    assert fetch(settings, store, "v2", now=later)["v2"] == (1, 0, 1, 0, 0)
    updated = store.get("1111.2011")
    assert updated is not None
    assert updated.version == 2
    assert updated.title.startswith("Quantum Criticality for Extended Nodes")
    assert updated.first_seen == NOW
    assert updated.updated == later
    assert updated.sources == ("v1", "v2")
    # an old version arriving late changes nothing
    assert fetch(settings, store, "v1", now=later + timedelta(days=1))["v1"] == (1, 0, 0, 0, 0)
    assert store.get("1111.2011").version == 2  # type: ignore[union-attr]


def test_arxiv_and_hugging_face_sightings_are_one_paper_with_both_signals(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(
            tmp_path,
            [
                ("arxiv-cs-ai", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.AI_2026-04-27.xml"))),
                ("hf-daily", "hf-daily", str(fixture_path("derived/hf_daily_overlap_2604.21935.json"))),
            ],
        )
    )
    store = PaperStore(open_database(settings.newsletter.database_url))
    result = fetch(settings, store)
    assert result["arxiv-cs-ai"] == (3, 3, 0, 0, 0)
    assert result["hf-daily"] == (1, 0, 1, 0, 0)
    assert store.count_papers() == 3
    paper = store.get("2604.21935")
    assert paper is not None
    assert paper.sources == ("arxiv-cs-ai", "hf-daily")
    assert paper.upvotes == 42
    assert paper.github_stars == 310
    assert paper.code_url == "https://github.com/example/math-takes-two"
    assert paper.hf_url == "https://huggingface.co/papers/2604.21935"
    assert paper.categories == ("cs.AI", "cs.LG")  # arXiv metadata kept: HF lists no categories
    assert paper.authors == ("Michael Cooper", "Samuel Cooper")
    # fetching both again combines nothing twice
    fetch(settings, store, now=NOW + timedelta(hours=2))
    again = store.get("2604.21935")
    assert again is not None
    assert again.sources == ("arxiv-cs-ai", "hf-daily")
    assert again.upvotes == 42


def test_merge_keeps_the_highest_counts_and_the_earliest_publication() -> None:
    base = Paper(paper_id="2604.1", version=1, title="T", categories=("cs.LG",), upvotes=10, sources=("a",),
                 published=NOW)
    merged, changed = merge_paper(None, base, now=NOW)
    assert changed
    assert merged.first_seen == NOW
    lower = dataclasses.replace(base, upvotes=3, published=NOW - timedelta(days=1), sources=("b",))
    merged2, changed2 = merge_paper(merged, lower, now=NOW + timedelta(hours=1))
    assert changed2
    assert merged2.upvotes == 10
    assert merged2.published == NOW - timedelta(days=1)
    assert merged2.sources == ("a", "b")
    assert merge_paper(merged2, lower, now=NOW)[1] is False


def test_source_state_remembers_validators_and_errors(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path, [("missing", "arxiv-rss", "nowhere.xml"),
                                ("ok", "arxiv-rss", str(fixture_path("arxiv_rss/distill_rss_cs.LG_2026-04-27.xml")))])
    )
    store = PaperStore(open_database(settings.newsletter.database_url))
    result = fetch(settings, store)
    assert result["missing"][4] == 1
    assert result["ok"] == (3, 3, 0, 0, 0)
    missing = store.source_state("missing")
    assert missing.last_status == "error"
    assert missing.last_error == f"file not found: {tmp_path.resolve() / 'nowhere.xml'}"
    ok = store.source_state("ok")
    assert ok.last_status == "ok"
    assert ok.last_success == NOW
    assert ok.last_counts == {"fetched": 3, "new": 3, "updated": 0, "skipped": 0}


@pytest.mark.slow
def test_topic_edits_rematch_every_stored_paper(offline_settings: Settings) -> None:
    store = PaperStore(open_database(offline_settings.newsletter.database_url))
    fetch(offline_settings, store)
    before = {m.paper_id for m in store.matches(topic="agents")}
    assert before
    assert refresh_matches(offline_settings, store) == 0  # nothing changed, nothing to do
    narrowed = dataclasses.replace(
        offline_settings,
        topics=tuple(
            dataclasses.replace(t, keywords=("web agent",), categories=(), description="") if t.slug == "agents" else t
            for t in offline_settings.topics
        ),
    )
    assert refresh_matches(narrowed, store) == store.count_papers()
    after = {m.paper_id for m in store.matches(topic="agents")}
    assert after
    assert after != before  # matched again under the edited topic
