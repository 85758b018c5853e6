"""New topics for papers that match none: cluster them and name each cluster by its distinctive terms.

``suggest_topics`` is pure (papers in, suggestions out); ``suggest_from_store`` feeds it. The unmatched
papers are clustered on their TF-IDF vectors reduced by LSA (or on given embedding vectors), with k-means;
the number of clusters, unless given, is √(n/2) (the silhouette score, tried first, was flat on real
abstracts and always chose 2). Each cluster is named by class-based TF-IDF (c-TF-IDF, as in BERTopic):
the words of all its papers form one document, and a term weighs

    tf(term, cluster) · log(1 + average words per class / frequency of the term over all classes)

so a term common to every cluster (or to the papers that already match a topic, which form one more class)
weighs little. ``to_toml`` prints the suggestions as ``[[topics]]`` tables ready to paste into config.toml.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from newsletter.config import Settings
from newsletter.matching.embeddings import EmbeddingMatcher
from newsletter.matching.matcher import build_matcher
from newsletter.matching.refresh import refresh_matches
from newsletter.matching.rules import paper_text
from newsletter.records.papers import Paper
from newsletter.storage.embeddings import EmbeddingStore
from newsletter.storage.papers import PaperStore

MAX_CLUSTERS = 12
LSA_DIMENSIONS = 30
# Words of abstracts that say nothing about the subject; added to scikit-learn's English stop words.
GENERIC_WORDS = frozenset((
    "approach", "approaches", "based", "demonstrate", "existing", "experiments", "framework", "introduce", "method",
    "methods", "model", "models", "novel", "paper", "performance", "present", "problem", "propose", "proposed",
    "results", "show", "shows", "study", "task", "tasks", "using", "work", "achieve", "achieves", "new", "art",
    "state", "large", "significantly",
))
_WORD_PATTERN = r"(?u)\b[a-zA-Z][\w-]+\b"  # words of two or more characters, starting with a letter


@dataclass(frozen=True)
class SuggestedTopic:
    slug: str
    name: str
    terms: tuple[str, ...]
    """Most distinctive terms first (c-TF-IDF)."""
    size: int
    examples: tuple[str, ...]
    """Titles of the papers nearest the cluster's centre."""
    paper_ids: tuple[str, ...]


@dataclass(frozen=True)
class Suggestions:
    papers: int
    """Unmatched papers considered."""
    topics: tuple[SuggestedTopic, ...]
    left_out: int
    """Papers in clusters smaller than ``min_size``."""


def _slugify(terms: Sequence[str], taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", "-".join(terms[:2]).lower()).strip("-")[:48] or "topic"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _vectors(texts: Sequence[str], seed: int) -> np.ndarray:
    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=1, dtype=np.float32)
    matrix = tfidf.fit_transform(texts)
    dimensions = min(LSA_DIMENSIONS, matrix.shape[0] - 1, matrix.shape[1] - 1)
    if dimensions < 2:
        return np.asarray(matrix.toarray(), dtype=np.float32)
    reduced = TruncatedSVD(n_components=dimensions, random_state=seed).fit_transform(matrix)
    return np.asarray(normalize(reduced), dtype=np.float32)


def default_clusters(papers: int) -> int:
    """The rule of thumb k = √(n/2), between 2 and ``MAX_CLUSTERS`` (silhouette scores were flat on real abstracts)."""
    return max(2, min(MAX_CLUSTERS, round(math.sqrt(papers / 2))))


def _cluster(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    k = max(1, min(clusters, vectors.shape[0]))
    return np.asarray(KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors))


def class_tfidf_terms(
    groups: Sequence[Sequence[str]], *, top: int = 6, background: Sequence[str] = ()
) -> list[tuple[str, ...]]:
    """The ``top`` most distinctive terms (words and two-word phrases) of each group of texts, by c-TF-IDF.

    ``background`` texts form one more class: their terms count as common, but it gets no terms of its own.
    """
    documents = [" ".join(group) for group in groups]
    if background:
        documents.append(" ".join(background))
    stop_words = sorted(GENERIC_WORDS | set(TfidfVectorizer(stop_words="english").get_stop_words() or ()))
    counter = CountVectorizer(stop_words=stop_words, ngram_range=(1, 2), token_pattern=_WORD_PATTERN)
    counts = counter.fit_transform(documents).toarray().astype(np.float64)
    terms = counter.get_feature_names_out()
    words_per_class = counts.sum(axis=1, keepdims=True)
    tf = counts / np.maximum(words_per_class, 1.0)
    idf = np.log(1.0 + words_per_class.mean() / np.maximum(counts.sum(axis=0), 1.0))
    weights = tf * idf
    result: list[tuple[str, ...]] = []
    for row in range(len(groups)):
        chosen: list[str] = []
        for index in np.argsort(-weights[row], kind="stable"):
            if weights[row, index] <= 0 or len(chosen) == top:
                break
            term = str(terms[index])
            # a word already inside a chosen phrase (or a phrase around a chosen word) adds nothing
            if any(term in c.split() or c in term.split() or term.rstrip("s") == c.rstrip("s") for c in chosen):
                continue
            chosen.append(term)
        result.append(tuple(chosen))
    return result


def suggest_topics(
    papers: Sequence[Paper],
    *,
    matched: Sequence[Paper] = (),
    clusters: int | None = None,
    min_size: int = 3,
    examples: int = 3,
    vectors: np.ndarray | None = None,
    taken_slugs: Sequence[str] = (),
    seed: int = 0,
) -> Suggestions:
    """Cluster ``papers`` (those no topic claims) and describe each cluster of at least ``min_size`` papers.

    ``matched`` papers only make terms common (they are covered already); ``vectors`` (one L2-normalised row
    per paper, e.g. stored embeddings) replaces the TF-IDF + LSA vectors; ``taken_slugs`` are avoided.
    """
    if len(papers) < max(2, min_size):
        return Suggestions(papers=len(papers), topics=(), left_out=len(papers))
    texts = [paper_text(p) for p in papers]
    points = vectors if vectors is not None else _vectors(texts, seed)
    labels = _cluster(points, clusters or default_clusters(len(papers)), seed)
    members = [np.flatnonzero(labels == label) for label in sorted(set(labels.tolist()))]
    members = sorted(members, key=len, reverse=True)
    named = class_tfidf_terms([[texts[i] for i in m] for m in members], background=[paper_text(p) for p in matched])
    taken = set(taken_slugs)
    topics: list[SuggestedTopic] = []
    for indices, terms in zip(members, named, strict=True):
        if len(indices) < min_size or not terms:
            continue
        centre = points[indices].mean(axis=0)
        nearest = indices[np.argsort(-(points[indices] @ centre), kind="stable")]
        topics.append(
            SuggestedTopic(
                slug=_slugify(terms, taken),
                name=_sentence_case(", ".join(terms[:3])),
                terms=terms,
                size=len(indices),
                examples=tuple(papers[int(i)].title for i in nearest[:examples]),
                paper_ids=tuple(papers[int(i)].paper_id for i in indices),
            )
        )
    left_out = len(papers) - sum(t.size for t in topics)
    return Suggestions(papers=len(papers), topics=tuple(topics), left_out=left_out)


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def to_toml(suggestions: Suggestions, *, since: str | None = None) -> str:
    """The suggestions as commented ``[[topics]]`` tables, ready to paste into config.toml (and to edit)."""
    scope = f" first seen since {since}" if since else ""
    lines = [
        f"# {suggestions.papers} papers{scope} match no topic; {len(suggestions.topics)} suggested topics"
        + (f" ({suggestions.left_out} papers in small clusters left out)." if suggestions.left_out else "."),
        "# Names and keywords are the clusters' most distinctive terms (class-based TF-IDF): edit them before use.",
    ]
    for topic in suggestions.topics:
        lines += ["", f"# {topic.size} papers, e.g.:"]
        lines += [f"#   - {title}" for title in topic.examples]
        lines += [
            "[[topics]]",
            f"slug = {_toml_string(topic.slug)}",
            f"name = {_toml_string(topic.name)}",
            f"description = {_toml_string('Papers about ' + ', '.join(topic.terms) + '.')}",
            "keywords = [" + ", ".join(_toml_string(t) for t in topic.terms[:3]) + "]",
        ]
    return "\n".join(lines) + "\n"


def suggest_from_store(
    settings: Settings,
    store: PaperStore,
    *,
    since: datetime | None = None,
    clusters: int | None = None,
    min_size: int = 3,
    examples: int = 3,
) -> Suggestions:
    """`topics suggest`: cluster the stored papers (first seen since ``since``) that match no topic.

    With ``[matching] method = "embedding"`` the stored paper embeddings are clustered (they exist for every
    matched paper); otherwise TF-IDF + LSA vectors. Papers that do match a topic only make terms common.
    """
    refresh_matches(settings, store)
    recent = store.papers(since=since)
    unmatched_ids = {p.paper_id for p in store.papers(since=since, unmatched=True)}
    unmatched = [p for p in recent if p.paper_id in unmatched_ids]
    matched = [p for p in recent if p.paper_id not in unmatched_ids]
    vectors = None
    if settings.matching.method == "embedding" and unmatched:
        matcher = build_matcher(settings.matching, cache=EmbeddingStore(store.engine))
        if isinstance(matcher, EmbeddingMatcher):
            vectors = matcher.paper_vectors(unmatched)
    return suggest_topics(
        unmatched,
        matched=matched,
        clusters=clusters,
        min_size=min_size,
        examples=examples,
        vectors=vectors,
        taken_slugs=[t.slug for t in settings.topics],
    )
