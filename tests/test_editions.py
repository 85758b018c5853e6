"""Editions through the real store: unique per (frequency, date), their windows, ranking and empty reasons."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.editions.build import build_edition, empty_reason
from newsletter.editions.relevance import RELEVANT_TIER, is_relevant
from newsletter.editions.selection import group_by_variant, select
from newsletter.errors import ConfigError
from newsletter.records.editions import Edition
from newsletter.storage import db
from subscribers.errors import SubscribersError
from subscribers.store import SubscriberStore
from tests.conftest import fixture_path
from tests.email_support import FIXTURE_SOURCES, NOW, email_settings, fetch, stores

pytestmark = pytest.mark.usefixtures("database_url")  # the edition store on SQLite and on PostgreSQL

SATURDAY_FEED = (
    "saturday", "arxiv-rss", str(fixture_path("arxiv_rss/allnewsai_rss_cs.CL_weekend_empty_2026-08-01.xml"))
)


def matched_ids(edition: Edition, topic: str) -> set[str]:
    return {e.paper_id for e in edition.topic_map[topic].entries} if topic in edition.topic_map else set()


def test_building_an_edition_twice_returns_the_stored_one(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    store, editions = stores(settings)
    fetch(settings, store, "arxiv-cs-ai", "arxiv-cs-lg")
    first = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    assert first.slug == "daily-2026-04-27"
    assert first.date == date(2026, 4, 27)
    assert first.cutoff == NOW + timedelta(hours=1)
    assert first.papers
    # papers that arrive later the same day do not change the built edition
    fetch(settings, store, "hf-daily", now=NOW + timedelta(hours=2))
    again = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=3))
    assert again == first
    assert editions.get_by_slug("daily-2026-04-27") == first
    # the snapshot is self-contained: it survives the papers table
    with store.engine.begin() as connection:
        connection.execute(db.topic_matches.delete())
        connection.execute(db.papers.delete())
    assert editions.get_by_id(first.id) == first


def test_a_daily_edition_holds_the_papers_first_seen_since_the_previous_one(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    store, editions = stores(settings)
    fetch(settings, store, "arxiv-cs-cl", now=datetime(2026, 4, 25, 5, 0, tzinfo=UTC))  # 26 h before the first
    fetch(settings, store, "arxiv-cs-ai", now=datetime(2026, 4, 26, 6, 0, tzinfo=UTC))
    first = build_edition(settings, store, editions, frequency="daily", now=datetime(2026, 4, 26, 7, 0, tzinfo=UTC))
    # the first daily edition takes the 24 hours before its cut-off
    assert first.window_start == datetime(2026, 4, 25, 7, 0, tzinfo=UTC)
    assert set(first.papers) == {"2604.21935", "2604.21936", "2604.21937"}
    fetch(settings, store, "arxiv-cs-lg", now=datetime(2026, 4, 27, 6, 0, tzinfo=UTC))
    second = build_edition(settings, store, editions, frequency="daily",
                           now=datetime(2026, 4, 27, 7, 30, tzinfo=UTC))
    assert second.window_start == first.cutoff
    cs_lg = {"2604.21952", "2604.21953", "2604.21956"}
    expected = {m.paper_id for m in store.matches(paper_ids=sorted(cs_lg))}
    assert expected
    assert set(second.papers) == expected
    assert not set(second.papers) & set(first.papers)


def test_a_weekly_edition_ranks_the_weeks_papers_by_trending_score_and_strength(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    store, editions = stores(settings)
    fetch(settings, store, "arxiv-cs-ai", now=NOW - timedelta(days=8))  # before the week
    fetch(settings, store, "hf-daily", now=NOW - timedelta(days=2))
    fetch(settings, store, "arxiv-cs-cl", now=NOW)
    weekly = build_edition(settings, store, editions, frequency="weekly", now=NOW)
    assert weekly.slug == "weekly-2026-04-27"
    assert weekly.window_start == NOW - timedelta(days=7)
    assert not {"2604.21935", "2604.21936", "2604.21937"} & set(weekly.papers)
    agents = weekly.topic_map["agents"].entries
    assert len(agents) > 3
    assert [e.rank for e in agents] == sorted((e.rank for e in agents), reverse=True)
    for entry in agents:
        paper = weekly.papers[entry.paper_id]
        tier = RELEVANT_TIER if is_relevant(entry.rank) else 0.0  # relevance first (issue 24)
        assert entry.rank == pytest.approx(tier + paper.score + entry.strength, abs=1e-3)
        assert paper.score_explanation.startswith("base 1.00")
        assert entry.reasons
    best = weekly.papers[agents[0].paper_id]
    assert (best.upvotes or 0) > 10  # trending on Hugging Face beats a fresh arXiv listing


def test_an_empty_weekend_edition_says_why_and_sends_nothing(tmp_path: Path) -> None:
    settings = email_settings(tmp_path, sources=[*FIXTURE_SOURCES, SATURDAY_FEED])
    store, editions = stores(settings)
    fetch(settings, store, "arxiv-cs-ai", now=datetime(2026, 7, 30, 4, 0, tzinfo=UTC))
    fetch(settings, store, "saturday", now=datetime(2026, 8, 1, 4, 0, tzinfo=UTC))
    edition = build_edition(settings, store, editions, frequency="daily",
                            now=datetime(2026, 8, 2, 4, 0, tzinfo=UTC))
    assert edition.is_empty
    assert edition.empty_reason == (
        "no new papers since 2026-08-01 04:00 UTC (arXiv does not announce on Saturdays and Sundays)"
    )
    readers = [(1, ("agents",)), (2, ("reasoning", "medical")), (3, ("medical", "agents", "reasoning"))]
    assert group_by_variant(edition, readers, max_per_topic=10) == []
    # on a weekday the reason carries no weekend note; new but unmatched papers are counted
    monday = datetime(2026, 8, 3, 4, 0, tzinfo=UTC)
    assert empty_reason("daily", monday - timedelta(days=1), monday, timezone="UTC", new_papers=0) == (
        "no new papers since 2026-08-02 04:00 UTC"
    )
    assert empty_reason("daily", monday - timedelta(days=1), monday, timezone="Europe/Berlin", new_papers=4) == (
        "4 new papers since 2026-08-02 06:00 CEST, none in the configured topics"
    )


def test_a_paper_never_reaches_a_subscriber_in_two_editions(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    store, editions = stores(settings)
    fetch(settings, store)
    monday = build_edition(settings, store, editions, frequency="weekly", now=NOW)
    tuesday = build_edition(settings, store, editions, frequency="weekly", now=NOW + timedelta(days=1))
    assert monday.id != tuesday.id
    assert matched_ids(monday, "agents") == matched_ids(tuesday, "agents")  # overlapping weekly windows
    first = select(monday, ["agents"], max_per_topic=5)
    assert editions.record_sent(monday.id, {1: first.paper_ids}) == 5
    assert editions.record_sent(monday.id, {1: first.paper_ids}) == 0  # recorded once
    sent = editions.already_sent_many([1, 2], paper_ids=list(tuesday.papers))
    assert sent == {1: set(first.paper_ids)}
    assert editions.already_sent_many([1, 2]) == sent
    assert editions.already_sent(1, ["nope", first.paper_ids[0]]) == {first.paper_ids[0]}
    later = select(tuesday, ["agents"], max_per_topic=5, already_sent=sent.get(1, set()))
    assert later.paper_ids
    assert not set(later.paper_ids) & set(first.paper_ids)
    fresh = select(tuesday, ["agents"], max_per_topic=5)
    assert fresh.paper_ids == first.paper_ids  # a reader without history gets the best ones
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(db.sent_papers.c.edition_id).distinct()).scalars().all()
    assert rows == [monday.id]


def test_edition_dates_and_frequencies_are_checked(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    store, editions = stores(settings)
    with pytest.raises(ConfigError, match="cannot build the daily edition of 2026-04-28: that date is in the future"):
        build_edition(settings, store, editions, frequency="daily", now=NOW, day=date(2026, 4, 28))
    with pytest.raises(ConfigError, match="unknown frequency 'hourly'; expected one of: daily, weekly"):
        build_edition(settings, store, editions, frequency="hourly", now=NOW)  # type: ignore[arg-type]
    past = build_edition(settings, store, editions, frequency="daily", now=NOW, day=date(2026, 4, 20))
    assert past.cutoff == datetime(2026, 4, 21, 0, 0, tzinfo=UTC)  # a past date ends at its midnight


def test_the_minimal_subscriber_store(tmp_path: Path) -> None:
    settings = email_settings(tmp_path)
    store, _ = stores(settings)
    subscribers = SubscriberStore(store.engine)
    ada = subscribers.add("  Ada@Example.ORG ", name="Ada\nLovelace", topics=["reasoning", "agents", "reasoning"],
                          now=NOW)
    assert (ada.email, ada.name, ada.topics, ada.status, ada.frequency) == (
        "ada@example.org", "Ada Lovelace", ("reasoning", "agents"), "active", "daily"
    )
    assert ada.created == NOW
    bob = subscribers.add("bob@example.org", topics=["medical"], frequency="weekly", now=NOW)
    subscribers.add("carol@example.org", status="unsubscribed", now=NOW)
    assert subscribers.get_by_email("ADA@example.org") == ada
    assert subscribers.get(bob.id) == bob
    assert subscribers.get(999) is None
    assert [s.email for s in subscribers.list_active()] == ["ada@example.org", "bob@example.org"]
    assert subscribers.list_active(frequency="weekly") == [bob]
    with pytest.raises(SubscribersError, match=re.escape("ada@example.org is already on the list")):
        subscribers.add("ada@example.org", now=NOW)
    with pytest.raises(SubscribersError, match="unknown frequency 'monthly'; expected one of: daily, weekly"):
        subscribers.add("dan@example.org", frequency="monthly", now=NOW)  # type: ignore[arg-type]


def test_building_an_edition_reads_the_stored_matches_and_never_matches_or_writes_them(tmp_path: Path) -> None:
    from newsletter.matching.refresh import FINGERPRINT_KEY, refresh_matches
    from newsletter.sources.parsing import parse_feed

    settings = email_settings(tmp_path, sources=FIXTURE_SOURCES[:1])
    store, editions = stores(settings)
    name, kind, path = FIXTURE_SOURCES[0]
    store.upsert(parse_feed(kind, Path(path).read_bytes(), source=name).papers, now=NOW)  # stored, not matched yet
    unmatched = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1), persist=False)
    assert unmatched.is_empty  # matches are the matching step's output, an input here
    assert (store.get_meta(FINGERPRINT_KEY), store.matches()) == (None, [])
    refresh_matches(settings, store)  # the matching step, as `fetch` runs it after storing
    assert not build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1)).is_empty
