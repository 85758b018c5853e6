"""The "none of these" decision: a paper joins a topic only when the topic beats what else the paper can be about.

Why: the calibrated rule (``calibration.decide``) puts each paper in its *least bad* topic. Most papers of a real
feed belong to none of a server's topics, and with 4 of 10 areas configured it matched 623 of 623 off-topic papers
(issue 24). A topic therefore has to win against a **background**: the arXiv category taxonomy (about 155
areas with a one-sentence description each, shipped as ``data/arxiv_categories.tsv``), scored by the configured
method exactly as the topics are (same facets, same similarity).

The rule, per paper and topic:

1. **Absorbed areas.** An area stands for a topic's own subject when the topic is the area's nearest topic and
   the area is within ``ABSORB_DELTA`` and ``ABSORB_SHARE`` of the topic's nearest area (topic text against
   area text). Those areas
   do not compete with the topic: a "Computer vision" topic is not beaten by the ``cs.CV`` area, nor a
   "Mathematics" topic by ``math.NT``, when the topic is their nearest.
2. **Joint self-training.** Topics and areas are self-trained together on the reference corpus (the batch and
   the recent stored papers, ``calibration.self_train``), so both move towards the papers that clearly
   belong to them: the corpus, not only the descriptions, decides what each area looks like today.
3. **Neighbours** (embeddings, opt-in: ``[matching] embedding_background_neighbours``, 0 by default): each
   paper's scores against the topics and areas are averaged (``NEIGHBOUR_WEIGHT``) with the mean scores of its
   nearest papers of the corpus (cosine of the paper vectors), so a paper is judged with the papers that read
   like it. Measured (docs/benchmarks.md): with 10 neighbours, rank 2 and margin 0.01, more macro-F1 at fewer
   off-topic papers on the held-out half of ``topics-dev`` and on a second set of other areas and months; but
   on the 86-paper archive fixtures (broad topics, a tiny store) the closed world fell from 0.81 to 0.64, so
   it is not the default.
4. **Rank among the background.** The paper may join the topic only if fewer than ``rank`` of the areas that
   no topic absorbed score above the topic for it by more than ``margin``: the topic must be among the
   paper's ``rank`` best subjects (``[matching] embedding_background_rank`` 3 with
   ``embedding_background_margin`` 0; ``tfidf_background_rank`` 1 with ``tfidf_background_margin`` 0.05, i.e.
   "reach the best area less 0.05"). Why a rank: the taxonomy has clusters of near-duplicate areas
   (``cs.LG``/``stat.ML``/``cs.AI``, ``eess.IV``/``cs.MM``), and a paper of the topic often has one or two of
   them just above it, while a paper of another subject has many. Measured on the held-out half of
   ``topics-dev`` (docs/benchmarks.md): with embeddings, rank 3 matched fewer off-topic papers than
   "best area less 0.1" at a higher macro-F1, in the open and the closed world. With TF-IDF, rank 2 did the
   same on ``topics-dev`` but lost most broad-topic papers on the coarse archive fixtures (macro-F1 0.38 →
   0.22), so TF-IDF keeps rank 1 by default.

The calibrated rule then picks among the topics that passed; keyword and category hits still match on their own
(``rules.apply_rules``), since an operator's explicit rule is evidence. Adding or removing a topic changes only
which areas it absorbs: nothing to retune. Measured on ``../shared/topics-dev`` (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import numpy as np

from newsletter.config import TopicSettings
from newsletter.matching.calibration import self_train
from newsletter.matching.evidence import Scored, TopicExamples, facet_embedding_text, topic_facets
from newsletter.records.papers import Paper

SHIPPED_VECTORS = "data/arxiv_facets_minilm.npz"
"""The areas' facet vectors under all-MiniLM-L6-v2 (float16, keyed by the SHA-256 of the facet text), so a new
process does not spend ~25 CPU-seconds embedding ~900 facets; a facet whose text changed is embedded as usual."""
SHIPPED_MODEL = "all-MiniLM-L6-v2@"
ABSORB_DELTA = 0.2
"""An area within this similarity of a topic's nearest area (and nearest to that topic) is the topic's own."""
ABSORB_SHARE = 0.5
"""...and at least this share of the topic's similarity to its nearest area. TF-IDF cosines of short texts are
small, so "within ``ABSORB_DELTA``" alone let a topic absorb areas that share no word with any topic (an
"Efficient training" topic absorbed every astrophysics area, being the first topic of a tie at zero)."""
TFIDF_ABSORB_SHARE = 0.6
"""``ABSORB_SHARE`` for TF-IDF, whose topic-to-area cosines rest on a few shared stems: at 0.5 a topic absorbed an
area through one generic stem ("parameter-efficient fine-tuning" took cosmology's "cosmological parameters").
Measured (docs/benchmarks.md): the coarse archive fixtures 0.473 / 0.453 → 0.503 / 0.477, the other sets
unchanged."""
AREA_SLUG_PREFIX = "arxiv-"
NEIGHBOUR_WEIGHT = 0.5
"""Step 3: the share of a paper's scores against the background that its nearest papers' mean scores make up."""
NEIGHBOUR_POOL = 4096
"""Neighbours are looked for among at most this many corpus rows (evenly spaced), so the cost stays linear in
the rows when a whole store is re-matched."""
NEIGHBOUR_CHUNK = 1024


@dataclass(frozen=True)
class Area:
    """One background area: an arXiv category and what its papers are about."""

    code: str
    name: str
    description: str


@functools.cache
def arxiv_areas() -> tuple[Area, ...]:
    """The arXiv category taxonomy shipped with the package (``data/arxiv_categories.tsv``)."""
    text = resources.files("newsletter.matching").joinpath("data/arxiv_categories.tsv").read_text(encoding="utf-8")
    areas = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, name, description = line.split("\t")
        areas.append(Area(code=code, name=name, description=description))
    return tuple(areas)


@functools.cache
def area_topics() -> tuple[TopicSettings, ...]:
    """The areas as topics, so either method scores them exactly as it scores the configured topics."""
    return tuple(
        TopicSettings(slug=AREA_SLUG_PREFIX + area.code.lower().replace(".", "-"), name=area.name,
                      description=area.description)
        for area in arxiv_areas()
    )


def _topic_column(scored: Scored, count: int) -> Scored:
    """``scored`` restricted to its first ``count`` columns (the configured topics)."""
    return replace(
        scored,
        similarities=scored.similarities[:, :count],
        facets=scored.facets[:count],
        closest_facet=scored.closest_facet[:, :count],
        examples=scored.examples[:count],
        closest_example=None if scored.closest_example is None else scored.closest_example[:, :count],
        example_closer=None if scored.example_closer is None else scored.example_closer[:, :count],
    )


@functools.cache
def shipped_area_vectors() -> dict[str, np.ndarray]:
    """Facet text hash → vector, from the package data (empty when the file is missing)."""
    path = resources.files("newsletter.matching").joinpath(SHIPPED_VECTORS)
    if not path.is_file():
        return {}
    with path.open("rb") as handle, np.load(handle) as data:
        return {str(digest): vector.astype(np.float32) for digest, vector in zip(data["hashes"], data["vectors"],
                                                                                   strict=True)}


def embedded_facets(topic: TopicSettings) -> list[str]:
    """The texts the embedding method embeds for a topic (``embeddings.topic_facets``, not imported: it imports
    the matcher, which imports this module)."""
    return [facet_embedding_text(topic, kind, text) for kind, text in topic_facets(topic)]


def facet_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seed_area_vectors(matcher: Any) -> None:
    """Give an all-MiniLM-L6-v2 matcher the shipped vectors of the area facets it has not embedded yet."""
    known = getattr(matcher, "_topic_vectors", None)
    encoder = getattr(matcher, "encoder", None)
    if known is None or encoder is None or not str(encoder.name).startswith(SHIPPED_MODEL):
        return
    shipped = shipped_area_vectors()
    for area in area_topics():
        for text in embedded_facets(area):
            if text not in known and (vector := shipped.get(facet_digest(text))) is not None:
                known[text] = vector


def topic_area_similarity(topics: Sequence[TopicSettings], matcher: Any) -> np.ndarray:
    """Topics × areas: how alike each topic's whole text and each area's text are, by the matcher's own method."""
    areas = area_topics()
    whole = getattr(matcher, "topic_vectors", None)
    if whole is not None:  # the embedding method: the first facet of each is the whole text
        vectors = [facets[0] for facets in whole([*topics, *areas])]
        matrix = np.vstack(vectors)
        product: np.ndarray = matrix[: len(topics)] @ matrix[len(topics):].T
        return product
    from newsletter.matching.rules import tfidf_vectorizer, topic_text

    texts = [topic_text(t) for t in (*topics, *areas)]
    rows = tfidf_vectorizer().fit_transform(texts)
    return np.asarray((rows[: len(topics)] @ rows[len(topics):].T).toarray(), dtype=np.float32)


def absorbed(topic_area: np.ndarray, *, delta: float = ABSORB_DELTA, share: float = ABSORB_SHARE) -> np.ndarray:
    """Topics × areas, True where the area is the topic's own subject (see the module docstring, step 1)."""
    if topic_area.size == 0:
        return np.zeros(topic_area.shape, dtype=bool)
    nearest_topic = topic_area.argmax(axis=0)
    best = topic_area.max(axis=1, keepdims=True)
    own = (topic_area >= best - delta) & (topic_area >= share * best) & (topic_area > 0)
    result: np.ndarray = own & (nearest_topic[np.newaxis, :] == np.arange(topic_area.shape[0])[:, np.newaxis])
    return result


def topic_absorption(topics: Sequence[TopicSettings], matcher: Any) -> np.ndarray:
    """Topics × areas: the areas each topic absorbs, by the matcher's own method (``TFIDF_ABSORB_SHARE`` for TF-IDF)."""
    tfidf = getattr(matcher, "topic_vectors", None) is None
    return absorbed(topic_area_similarity(topics, matcher), share=TFIDF_ABSORB_SHARE if tfidf else ABSORB_SHARE)


def neighbour_smoothed(scores: np.ndarray, features: Any, *, neighbours: int,
                       weight: float = NEIGHBOUR_WEIGHT, pool: int = NEIGHBOUR_POOL) -> np.ndarray:
    """Rows × columns: each row's scores averaged with the mean scores of its ``neighbours`` nearest other rows.

    ``features`` holds one L2-normalised dense vector per row (the paper embeddings); the nearest rows are those
    of highest cosine, looked for among at most ``pool`` rows. Fewer rows than ``neighbours`` + 1, or sparse
    features (TF-IDF): the scores as they are.
    """
    rows = scores.shape[0]
    if neighbours <= 0 or rows <= neighbours or not isinstance(features, np.ndarray):
        return scores
    reference = np.arange(rows) if rows <= pool else np.linspace(0, rows - 1, pool).round().astype(np.int64)
    if len(reference) <= neighbours:
        return scores
    reference_features, reference_scores = features[reference], scores[reference]
    result = np.empty_like(scores)
    for start in range(0, rows, NEIGHBOUR_CHUNK):
        stop = min(start + NEIGHBOUR_CHUNK, rows)
        cosine = features[start:stop] @ reference_features.T
        block, position = np.nonzero(reference[np.newaxis, :] == np.arange(start, stop)[:, np.newaxis])
        cosine[block, position] = -np.inf  # a row is not its own neighbour
        nearest = np.argpartition(-cosine, neighbours - 1, axis=1)[:, :neighbours]
        result[start:stop] = (1 - weight) * scores[start:stop] + weight * reference_scores[nearest].mean(axis=1)
    return result


def beats_background(
    topic_scores: np.ndarray, area_scores: np.ndarray, features: Any, own: np.ndarray, *, margin: float,
    rank: int = 1, self_training: bool = True, neighbours: int = 0,
) -> np.ndarray:
    """Rows × topics, True where fewer than ``rank`` areas no topic absorbed score above the topic by > margin.

    An area absorbed by *another* topic does not compete either: a paper closest to it is about the server's
    topics, and the calibrated rule chooses among them (measured: coarse closed-world macro-F1 0.63 → 0.77
    with embeddings, the open world unchanged).
    """
    count = topic_scores.shape[1]
    joint = np.hstack([topic_scores, area_scores])
    if self_training:
        joint = self_train(joint, features)
    joint = neighbour_smoothed(joint, features, neighbours=neighbours)
    mine, theirs = joint[:, :count], joint[:, count:]
    competitors = theirs[:, ~own.any(axis=0)] if own.size else theirs
    if not competitors.shape[1]:
        return np.ones(topic_scores.shape, dtype=bool)
    result = np.zeros(mine.shape, dtype=bool)
    for column in range(count):  # one column at a time: rows × areas, never rows × topics × areas
        above = (competitors > mine[:, column : column + 1] + margin + 1e-9).sum(axis=1)
        result[:, column] = above < max(rank, 1)
    return result


def score_open_world(
    matcher: Any,
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    *,
    background: Sequence[Paper] = (),
    examples: TopicExamples | None = None,
    calibrated: bool = True,
) -> tuple[Scored, np.ndarray | None]:
    """The topics' ``Scored`` and, when the rule asks for the background, rows × topics "beats the background".

    ``matcher`` is a ``newsletter.matching.matcher.Matcher`` (typed loosely: the matcher imports this module).

    The areas are scored in the same call as the topics (one embedding of the papers, one TF-IDF fit).
    ``calibrated=False`` (a plain threshold asked for) scores the topics alone.
    """
    rule = matcher.rule
    if not (calibrated and rule.calibrated and rule.background) or not topics:
        return matcher.score(papers, topics, background=background, examples=examples), None
    areas = area_topics()
    seed_area_vectors(matcher)
    everything = matcher.score(papers, [*topics, *areas], background=background, examples=examples)
    count = len(topics)
    own = topic_absorption(topics, matcher)
    beats = beats_background(everything.similarities[:, :count], everything.similarities[:, count:],
                             everything.features, own, margin=rule.background_margin,
                             rank=rule.background_rank, self_training=rule.self_training,
                             neighbours=rule.background_neighbours)
    return _topic_column(everything, count), beats

