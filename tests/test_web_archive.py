"""The archive pages, edition pages and feeds read the per-edition index, page, and answer 304s (issue 17, item 1)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from starlette.testclient import TestClient

from newsletter.storage import db
from newsletter.storage.db import MIGRATIONS, create_engine, migrate
from newsletter.storage.edition_index import EditionIndex
from newsletter.storage.editions import EditionStore
from newsletter.web.app import create_app
from tests.archive_support import add_editions
from tests.mailsink import MailSink
from tests.web_support import Site, make_site

ATOM = {"a": "http://www.w3.org/2005/Atom"}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with MailSink() as sink:
        yield make_site(tmp_path, sink, monkeypatch)


def _break_snapshots(site: Site) -> None:
    """Make every stored snapshot unreadable: a page that still parses one now fails."""
    with site.engine.begin() as connection:
        connection.execute(sa.update(db.editions).values(content={"broken": True}))


def _listed(html: str) -> list[str]:
    return re.findall(r'href="/archive/(daily-[0-9-]+)"', html)


def test_archive_feeds_and_health_never_parse_an_edition_snapshot(site: Site) -> None:
    slugs = add_editions(EditionStore(site.engine), count=120, papers=12)
    kept = site.client.get(f"/archive/{slugs[5]}")
    assert kept.status_code == 200
    _break_snapshots(site)
    first = site.client.get("/archive")
    assert first.status_code == 200
    assert _listed(first.text) == list(reversed(slugs))[:50]
    assert 'href="/archive?page=2"' in first.text
    third = site.client.get("/archive?page=3")
    assert _listed(third.text) == list(reversed(slugs))[100:]
    assert 'href="/archive?page=2"' in third.text
    assert "page=4" not in third.text
    assert site.client.get("/archive?page=4").status_code == 404
    for bad in ("0", "x", "²", "1" * 5000):
        assert site.client.get("/archive", params={"page": bad}).status_code == 400
    feed = site.client.get("/topics/agents.atom")
    assert feed.status_code == 200
    entries = ET.fromstring(feed.content).findall("a:entry", ATOM)
    assert len(entries) == 50  # the newest 50 papers, not the whole history
    newest = date(2025, 5, 1) + timedelta(days=119)
    assert entries[0].findtext("a:title", namespaces=ATOM) == f"Paper 0 of {newest}: agents that plan"
    assert site.client.get("/healthz").json() == {"status": "ok"}
    # the page rendered before is stored, so another process (a new app) serves it without the snapshot
    other = TestClient(create_app(site.settings, site.engine))
    again = other.get(f"/archive/{slugs[5]}")
    assert (again.status_code, again.text) == (200, kept.text)


def test_archive_edition_and_feed_answer_304_to_a_current_copy(site: Site) -> None:
    store = EditionStore(site.engine)
    add_editions(store, count=3, papers=6)
    for path in ("/archive", "/archive/daily-2025-05-02", "/topics/reasoning.atom"):
        response = site.client.get(path)
        etag, modified = response.headers["etag"], response.headers["last-modified"]
        assert response.headers["cache-control"].startswith("public")
        cached = site.client.get(path, headers={"if-none-match": etag})
        assert (cached.status_code, cached.content) == (304, b""), path
        assert cached.headers["etag"] == etag
        assert cached.headers["x-content-type-options"] == "nosniff"
        assert site.client.get(path, headers={"if-modified-since": modified}).status_code == 304
        assert site.client.get(path, headers={"if-none-match": '"other"'}).status_code == 200
    before = site.client.get("/archive").headers["etag"]
    add_editions(store, count=1, papers=6, first=date(2025, 6, 1))
    after = site.client.get("/archive", headers={"if-none-match": before})
    assert after.status_code == 200
    assert "daily-2025-06-01" in after.text
    feed = site.client.get("/topics/reasoning.atom", headers={"if-none-match": before})
    assert feed.status_code == 200


def test_the_migration_indexes_editions_stored_before_it(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    scratch = create_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    migrate(scratch)
    add_editions(EditionStore(scratch), count=2, papers=3)
    with scratch.connect() as source:
        rows = [dict(r) for r in source.execute(sa.select(db.editions)).mappings()]
    with engine.begin() as connection:
        connection.execute(db.editions.insert(), rows)
    migrate(engine)
    index = EditionIndex(engine)
    assert [s.slug for s in index.listed(offset=0, limit=10)] == ["daily-2025-05-02", "daily-2025-05-01"]
    assert len(index.feed("agents", limit=50)) == 2


def test_the_public_archive_has_no_feedback_links_that_lead_nowhere(site: Site) -> None:
    (slug,) = add_editions(EditionStore(site.engine), count=1, papers=3)
    page = site.client.get(f"/archive/{slug}")
    assert page.status_code == 200
    assert "Paper 0 of" in page.text
    assert "like this" not in page.text
    assert "vote=" not in page.text
