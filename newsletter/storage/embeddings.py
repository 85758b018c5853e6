"""All database access for stored paper embeddings (the ``paper_embeddings`` table).

A vector is stored once per paper and model as little-endian float32 bytes, with a hash of the text it was
computed from: the `embedding` matcher embeds a paper again only when its title or abstract changed, and
re-matching after a topic edit embeds nothing but the topics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

_CHUNK = 500
_DTYPE = np.dtype("<f4")


def text_hash(text: str) -> str:
    """The key of a vector: a text embedded once is never embedded again while its words stay the same."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class EmbeddingStore:
    """Implements ``newsletter.matching.embeddings.VectorCache`` over the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, paper_ids: Sequence[str], *, model: str) -> dict[str, tuple[str, np.ndarray]]:
        """``{paper_id: (text_hash, vector)}`` of the papers that have a vector of ``model``."""
        table = db.paper_embeddings
        found: dict[str, tuple[str, np.ndarray]] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(list(dict.fromkeys(paper_ids))):
                query = sa.select(table.c.paper_id, table.c.text_hash, table.c.dim, table.c.vector).where(
                    table.c.model == model, table.c.paper_id.in_(chunk)
                )
                for paper_id, text_hash, dim, blob in connection.execute(query):
                    vector = np.frombuffer(blob, dtype=_DTYPE)
                    if vector.shape == (dim,):
                        found[paper_id] = (text_hash, vector.astype(np.float32))
        return found

    def save(self, vectors: Mapping[str, tuple[str, np.ndarray]], *, model: str) -> None:
        """Store (or replace) ``{paper_id: (text_hash, vector)}`` for ``model``, in one transaction."""
        if not vectors:
            return
        table = db.paper_embeddings
        rows = [
            {
                "paper_id": paper_id,
                "model": model,
                "text_hash": text_hash,
                "dim": int(vector.shape[0]),
                "vector": np.ascontiguousarray(vector, dtype=_DTYPE).tobytes(),
            }
            for paper_id, (text_hash, vector) in vectors.items()
        ]
        ids = list(vectors)
        with self.engine.begin() as connection:
            for chunk in _chunks(ids):
                connection.execute(table.delete().where(table.c.model == model, table.c.paper_id.in_(chunk)))
            connection.execute(table.insert(), rows)

    def count(self, *, model: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(db.paper_embeddings)
        if model is not None:
            query = query.where(db.paper_embeddings.c.model == model)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


class TextVectorCache:
    """A ``VectorCache`` for `topics evaluate`: sample papers' vectors kept by text hash, the others by paper.

    Why: a labelled sample is not stored as papers (its ids are CSV line numbers), yet embedding 1,100 abstracts
    takes minutes; keyed by the hash of the text, a second run over the same file embeds nothing. ``texts``
    and ``paper_ids`` name the sample's papers; every other id goes to the ``paper_embeddings`` table.
    """

    def __init__(self, engine: Engine, texts: Sequence[str], paper_ids: Sequence[str]) -> None:
        self.engine = engine
        self.papers = EmbeddingStore(engine)
        self.hash_of = {pid: text_hash(text) for pid, text in zip(paper_ids, texts, strict=True)}

    def load(self, paper_ids: Sequence[str], *, model: str) -> dict[str, tuple[str, np.ndarray]]:
        sample = [pid for pid in paper_ids if pid in self.hash_of]
        found = self.papers.load([pid for pid in paper_ids if pid not in self.hash_of], model=model)
        table = db.text_embeddings
        by_hash: dict[str, np.ndarray] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(list(dict.fromkeys(self.hash_of[pid] for pid in sample))):
                query = sa.select(table.c.text_hash, table.c.dim, table.c.vector).where(
                    table.c.model == model, table.c.text_hash.in_(chunk)
                )
                for digest, dim, blob in connection.execute(query):
                    vector = np.frombuffer(blob, dtype=_DTYPE)
                    if vector.shape == (dim,):
                        by_hash[digest] = vector.astype(np.float32)
        for pid in sample:
            cached = by_hash.get(self.hash_of[pid])
            if cached is not None:
                found[pid] = (self.hash_of[pid], cached)
        return found

    def save(self, vectors: Mapping[str, tuple[str, np.ndarray]], *, model: str) -> None:
        self.papers.save({pid: v for pid, v in vectors.items() if pid not in self.hash_of}, model=model)
        rows = {
            digest: {"text_hash": digest, "model": model, "dim": int(vector.shape[0]),
                     "vector": np.ascontiguousarray(vector, dtype=_DTYPE).tobytes()}
            for pid, (digest, vector) in vectors.items()
            if pid in self.hash_of
        }
        if not rows:
            return
        table = db.text_embeddings
        with self.engine.begin() as connection:
            for chunk in _chunks(list(rows)):
                connection.execute(table.delete().where(table.c.model == model, table.c.text_hash.in_(chunk)))
            connection.execute(table.insert(), list(rows.values()))
