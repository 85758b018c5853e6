"""Each reader's private feed: its secret key, and which editions (and papers of them) reached that reader.

The manage page's feed URL carries the subscriber id and a random 256-bit key stored here; an email's carries a
signed feed token (``rendering.links.feed_token``), made without reading this table. Rotating revokes both:
a new key, and ``revoked_before`` (tokens issued before it are refused). What a feed shows is read from the
ledger: the reader's ``sent`` rows, newest edition first, and the papers of each row's variant
(``variant_papers``) — exactly what that reader's emails carried.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

feeds = db.reader_feeds
deliveries = db.deliveries
variant_papers = db.variant_papers


@dataclass(frozen=True)
class ReaderEdition:
    edition_id: int
    variant_key: str
    sent_at: datetime | None
    paper_ids: frozenset[str]


class ReaderFeeds:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def key(self, subscriber_id: int, *, now: datetime) -> str:
        """The reader's current feed key, made on first use."""
        with self.engine.begin() as connection:
            found = connection.execute(sa.select(feeds.c.key).where(feeds.c.subscriber_id == subscriber_id)).scalar()
            if found is not None:
                return str(found)
            key = secrets.token_urlsafe(32)
            db.insert_new(connection, feeds, [{"subscriber_id": subscriber_id, "key": key, "created": now}])
            return str(connection.execute(
                sa.select(feeds.c.key).where(feeds.c.subscriber_id == subscriber_id)).scalar_one())

    def rotate(self, subscriber_id: int, *, now: datetime) -> str:
        """A new key, and signed tokens issued before ``now`` revoked: every feed URL given out so far answers
        404 from now on."""
        key = secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            done = connection.execute(feeds.update().where(feeds.c.subscriber_id == subscriber_id)
                                      .values(key=key, created=now, revoked_before=now)).rowcount
            if not done:
                connection.execute(feeds.insert().values(subscriber_id=subscriber_id, key=key, created=now,
                                                         revoked_before=now))
        return key

    def token_valid(self, subscriber_id: int, issued: datetime) -> bool:
        """Whether a signed feed token issued at ``issued`` is still good: issued at or after the last rotation."""
        with self.engine.connect() as connection:
            revoked = connection.execute(sa.select(feeds.c.revoked_before)
                                         .where(feeds.c.subscriber_id == subscriber_id)).scalar()
        return revoked is None or issued >= revoked

    def matches(self, subscriber_id: int, key: str) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(sa.select(feeds.c.key).where(feeds.c.subscriber_id == subscriber_id)).scalar()
        return found is not None and hmac.compare_digest(str(found).encode(), key.encode())

    def version(self, subscriber_id: int) -> tuple[int, int]:
        """What the feed depends on in the ledger: the reader's sent rows (count, newest id); one indexed query."""
        with self.engine.connect() as connection:
            count, newest = connection.execute(
                sa.select(sa.func.count(), sa.func.max(deliveries.c.id))
                .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state == "sent")
            ).one()
        return int(count or 0), int(newest or 0)

    def editions(self, subscriber_id: int, *, limit: int) -> list[ReaderEdition]:
        """The reader's newest ``limit`` sent editions, with the papers each one's email carried."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.edition_id, deliveries.c.variant_key, deliveries.c.sent_at)
                .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state == "sent")
                .order_by(deliveries.c.edition_id.desc()).limit(limit)
            ).all()
            result = []
            for row in rows:
                papers = frozenset(connection.execute(
                    sa.select(variant_papers.c.paper_id).where(variant_papers.c.edition_id == row.edition_id,
                                                               variant_papers.c.variant_key == row.variant_key)
                ).scalars())
                result.append(ReaderEdition(row.edition_id, row.variant_key, row.sent_at, papers))
        return result
