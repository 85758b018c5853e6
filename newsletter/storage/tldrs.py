"""All database access for stored TL;DRs (the ``paper_tldrs`` table).

Each paper's card TL;DR is stored with a hash of the text it summarises (``rendering.tldr.tldr_source``): a
second process (the next send, a worker, a preview) reads it instead of summarising again, and a paper whose
abstract (or Hugging Face summary) changed gets a new one, since its hash no longer matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

_CHUNK = 500


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class TldrStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, paper_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``{paper_id: (text_hash, tldr)}`` of the papers that have a stored TL;DR."""
        table = db.paper_tldrs
        found: dict[str, tuple[str, str]] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(list(dict.fromkeys(paper_ids))):
                query = sa.select(table.c.paper_id, table.c.text_hash, table.c.tldr).where(table.c.paper_id.in_(chunk))
                for paper_id, text_hash, tldr in connection.execute(query):
                    found[str(paper_id)] = (str(text_hash), str(tldr))
        return found

    def save(self, tldrs: Mapping[str, tuple[str, str]]) -> None:
        """Store (or replace) ``{paper_id: (text_hash, tldr)}`` in one transaction. Two processes saving the
        same paper at once both write the same text: the later insert is skipped, not an error."""
        if not tldrs:
            return
        table = db.paper_tldrs
        rows = [{"paper_id": p, "text_hash": h, "tldr": t} for p, (h, t) in tldrs.items()]
        with self.engine.begin() as connection:
            for chunk in _chunks(list(tldrs)):
                connection.execute(table.delete().where(table.c.paper_id.in_(chunk)))
            db.insert_new(connection, table, rows)
