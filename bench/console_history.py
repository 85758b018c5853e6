"""A year of history for the console's load test (``bench/web.py --console``): 365 daily editions, 20,000
readers who joined evenly over the year, and the ledger a year of sending leaves behind.

Edition *d* went to every reader who had joined by day *d* (about 3.65 million delivery rows in all, all
``sent`` but 0.1% ``failed``, and a few ``deferred`` in the newest edition), with one stored variant each;
1% of the readers bounced (a hard bounce with its diagnostic) and 0.05% complained, and readers voted on a
few papers a day. Rows are
written with SQLAlchemy Core in large batches (building them one use case call at a time would take hours);
the editions themselves go through the real ``EditionStore.insert`` (``tests/archive_support``).
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from newsletter.storage import db  # noqa: E402
from newsletter.storage.editions import EditionStore  # noqa: E402
from subscribers.schema import paper_feedback, subscriber_events, subscribers  # noqa: E402
from tests.archive_support import TOPICS, add_editions  # noqa: E402

FIRST = date(2025, 5, 1)
BATCH = 50_000


def _chunks(rows: list[dict[str, object]]) -> list[list[dict[str, object]]]:
    return [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]


def build_history(engine: Engine, *, editions: int = 365, readers: int = 20_000, papers: int = 60) -> dict[str, object]:
    """Fill the (new, migrated) database; returns what the load test needs: a slug, a reader id, a search."""
    slugs = add_editions(EditionStore(engine), count=editions, papers=papers, first=FIRST)
    slugs_ids = {}
    with engine.connect() as connection:
        for edition_id, slug in connection.execute(sa.select(db.editions.c.id, db.editions.c.slug)):
            slugs_ids[slug] = edition_id
    joined = [FIRST + timedelta(days=i * editions // readers) for i in range(readers)]
    topics = [t[0] for t in TOPICS]
    people = []
    for i in range(readers):
        when = datetime.combine(joined[i], time(12), tzinfo=UTC)
        status = "bounced" if i % 100 == 7 else "complained" if i % 2000 == 13 else "active"
        people.append({"id": i + 1, "email": f"reader{i:05d}@example.org", "name": f"Reader {i}", "status": status,
                       "topics": [topics[i % len(topics)], topics[(i + 1) % len(topics)]], "frequency": "daily",
                       "source": "import", "consent_at": when, "created": when, "updated": when})
    with engine.begin() as connection:
        for chunk in _chunks(people):
            connection.execute(subscribers.insert(), chunk)
    total = 0
    for day_number, slug in enumerate(slugs):
        edition_id = slugs_ids[slug]
        sent_at = datetime.combine(FIRST + timedelta(days=day_number), time(7, 30), tzinfo=UTC)
        key = f"{edition_id:032x}"
        rows = []
        for i in range(readers):
            if joined[i] > FIRST + timedelta(days=day_number):
                break
            last = day_number == len(slugs) - 1  # only the newest edition still has rows waiting for a retry
            state = "failed" if (i + day_number) % 997 == 0 else "deferred" if last and i % 4001 == 0 else "sent"
            rows.append({"edition_id": edition_id, "subscriber_id": i + 1, "email": f"reader{i:05d}@example.org",
                         "name": f"Reader {i}", "variant_key": key, "message_id": f"<{edition_id}.{i}@example.org>",
                         "state": state, "phase": "done", "attempts": 1, "created": sent_at, "updated": sent_at,
                         "sent_at": sent_at if state == "sent" else None,
                         "last_code": 550 if state == "failed" else None,
                         "last_message": "5.1.1 user unknown" if state == "failed" else None})
        with engine.begin() as connection:
            connection.execute(db.variants.insert().values(
                edition_id=edition_id, key=key, subject=f"Trending papers of {slug}",
                html=f"<html><body><h1>{slug}</h1>{'<p>a paper about agents that plan</p>' * 40}</body></html>",
                text=f"{slug}\n", nonce="", created=sent_at))
            for chunk in _chunks(rows):
                connection.execute(db.deliveries.insert(), chunk)
        total += len(rows)
    events, votes = [], []
    for person in people:
        if person["status"] in ("bounced", "complained"):
            i = int(str(person["id"])) - 1
            kind = "hard-bounce" if person["status"] == "bounced" else "complaint"
            events.append({"subscriber_id": i + 1, "kind": kind, "action": person["status"], "status": "5.1.1",
                           "diagnostic": "smtp; 550 5.1.1 <reader@example.org>: Recipient address rejected",
                           "message_id": f"<{slugs_ids[slugs[-1]]}.{i}@example.org>",
                           "edition_id": slugs_ids[slugs[-1]], "attributed_by": "verp",
                           "created": datetime.combine(FIRST + timedelta(days=editions - 1), time(9), tzinfo=UTC)})
    for day_number in range(editions):
        for n in range(5):
            i = (day_number * 37 + n * 101) % readers
            votes.append({"subscriber_id": i + 1, "paper_id": f"25{day_number:04d}.{n:05d}", "topic": topics[0],
                          "vote": 1 if n % 3 else -1,
                          "created": datetime.combine(FIRST + timedelta(days=day_number), time(10), tzinfo=UTC)})
    with engine.begin() as connection:
        connection.execute(subscriber_events.insert(), events)
        connection.execute(paper_feedback.insert(), votes)
    bounced = next(int(str(p["id"])) for p in people if p["status"] == "bounced")
    return {"slug": slugs[-2], "reader": bounced, "deliveries": total, "search": "reader1234"}
