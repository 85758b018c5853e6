"""Which topics a paper belongs to, and why. Pure: papers and topic settings in, matches out.

A paper matches a topic when it is listed in one of the topic's arXiv categories, mentions one of its
keywords as a whole word (case-insensitive, a plural "s"/"es" accepted), or its title and abstract are
similar to the topic's name, description and keywords at or above the threshold — unless it mentions an
excluded keyword. The similarity is TF-IDF cosine here (``tfidf_similarities``) or the cosine of sentence
embeddings (``newsletter.matching.embeddings``); ``apply_rules`` adds the category and keyword rules to either. The
match strength orders papers within a section:

    strength = similarity + 0.3 (primary category listed) or 0.2 (other category listed)
               + 0.15 per distinct keyword found, at most 0.45
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from newsletter.config import TopicSettings
from newsletter.matching.evidence import Scored, reason_span, shared_terms, topic_facets, word_set
from newsletter.matching.stemming import stemmed_words
from newsletter.records.papers import Paper, TopicMatch

TFIDF_TERMS = "porter-stems"
"""What TF-IDF counts (``tfidf_vectorizer``); part of the TF-IDF matcher's fingerprint, so stored matches made
over other terms (whole words, before) are recomputed."""
PRIMARY_CATEGORY_BONUS = 0.3
OTHER_CATEGORY_BONUS = 0.2
KEYWORD_BONUS = 0.15
MAX_KEYWORD_BONUS = 0.45


def _phrase(keyword: str) -> str:
    return r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", keyword.strip()))


def normalise_keyword(keyword: str) -> str:
    return " ".join(keyword.lower().split())


class KeywordIndex:
    """Finds every configured keyword in a text with one regex scan, however many topics there are.

    Alternatives are tried longest first; the few matched spans are then checked against each keyword
    alone, so a keyword inside a longer one ("tool" in "tool use") is found too.
    """

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords = tuple(dict.fromkeys(normalise_keyword(k) for k in keywords if k.strip()))
        self._single = [re.compile(r"\b" + _phrase(k) + r"(?:e?s)?\b") for k in self.keywords]
        ordered = sorted(self.keywords, key=len, reverse=True)
        alternatives = "|".join(_phrase(k) for k in ordered)
        self._any = re.compile(r"\b(?:" + alternatives + r")(?:e?s)?\b") if ordered else None

    def find(self, text: str) -> frozenset[str]:
        """Keywords found in ``text``; the text is case-folded once (an IGNORECASE scan is 4× slower)."""
        if self._any is None:
            return frozenset()
        spans = {m.group(0) for m in self._any.finditer(text.lower())}
        if not spans:
            return frozenset()
        return frozenset(
            k for k, pattern in zip(self.keywords, self._single, strict=True) if any(pattern.search(s) for s in spans)
        )


def tfidf_vectorizer() -> TfidfVectorizer:
    """The TF-IDF space of matching: sublinear term counts of Porter stems, English stop words dropped.

    Stems rather than words (``newsletter.matching.stemming``): a one-sentence topic and an abstract often use the
    same word in different forms ("auctions", "auction"); docs/benchmarks.md measures the difference.
    """
    return TfidfVectorizer(analyzer=stemmed_words, sublinear_tf=True, dtype=np.float32)


def topic_text(topic: TopicSettings) -> str:
    return " ".join([topic.name, topic.description, *topic.keywords])


def paper_text(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}"


def topics_fingerprint(topics: Sequence[TopicSettings], threshold: float) -> str:
    """Changes whenever a topic or the threshold changes, so stored matches know they are stale."""
    payload = json.dumps([asdict(t) for t in topics] + [threshold], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def match_papers(
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    *,
    threshold: float,
    background: Sequence[Paper] = (),
) -> list[TopicMatch]:
    """Match ``papers`` by TF-IDF similarity and the rules; ``background`` papers only lend their words to IDF.

    Without a background, three new papers would define "rare word" among themselves and their similarities
    would not be comparable with those of a large batch.
    """
    if not papers or not topics:
        return []
    scored = tfidf_score(papers, topics, background=background)[0]
    return apply_rules(papers, topics, scored.similarities[: len(papers)], threshold=threshold, scored=scored)


def tfidf_similarities(
    papers: Sequence[Paper], topics: Sequence[TopicSettings], *, background: Sequence[Paper] = ()
) -> np.ndarray:
    """TF-IDF cosine similarity of each paper (row) to each topic (column), as a float32 matrix."""
    if not papers or not topics:
        return np.zeros((len(papers), len(topics)), dtype=np.float32)
    similarities: np.ndarray = tfidf_score(papers, topics, background=background)[0].similarities[: len(papers)]
    return similarities


def tfidf_score(
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    *,
    background: Sequence[Paper] = (),
) -> tuple[Scored, TfidfVectorizer]:
    """Similarities of the papers and then the background papers, each topic's closest facet, and the vectorizer
    (which turns example papers into rows of the same space)."""
    texts = [paper_text(p) for p in papers]
    vectorizer = tfidf_vectorizer()
    seen = {p.paper_id for p in papers}
    extra = [paper_text(p) for p in background if p.paper_id not in seen]
    matrix = vectorizer.fit_transform(texts + extra + [topic_text(t) for t in topics])
    count = len(texts) + len(extra)
    rows, topic_rows = matrix[:count], matrix[count:]
    similarities = np.asarray((rows @ topic_rows.T).toarray(), dtype=np.float32)
    facets = [topic_facets(t) for t in topics]
    closest = closest_facets(rows, facets, vectorizer.transform)
    return Scored(similarities=similarities, features=rows, facets=facets, closest_facet=closest), vectorizer


def closest_facets(rows: Any, facets: Sequence[Sequence[tuple[str, str]]],
                   transform: Callable[[list[str]], Any]) -> np.ndarray:
    """Rows × topics: the index of the facet a reason may name (``reason_span``) that each TF-IDF row is closest to;
    ``transform`` turns facet texts into rows of the same space."""
    closest = np.zeros((rows.shape[0], len(facets)), dtype=np.int64)
    for column, facet_list in enumerate(facets):
        start, end = reason_span(facet_list)
        facet_rows = transform([text for _, text in facet_list[start:end]])
        closest[:, column] = np.asarray((rows @ facet_rows.T).toarray()).argmax(axis=1) + start
    return closest


def apply_rules(
    papers: Sequence[Paper],
    topics: Sequence[TopicSettings],
    similarities: np.ndarray,
    *,
    threshold: float = 0.0,
    selected: np.ndarray | None = None,
    scored: Scored | None = None,
) -> list[TopicMatch]:
    """The matches: a category or keyword hit, or the similarity rule; minus exclusions.

    ``similarities`` has one row per paper and one column per topic, from any similarity method. The
    similarity rule is ``selected[paper, topic]`` when given (``newsletter.matching.calibration.decide``),
    else ``similarities[paper, topic] >= threshold``. ``scored`` says what each match rests on, for reasons.
    """
    if not papers or not topics:
        return []
    index = KeywordIndex([k for t in topics for k in (*t.keywords, *t.exclude_keywords)])
    wanted = [tuple(normalise_keyword(k) for k in t.keywords) for t in topics]
    unwanted = [tuple(normalise_keyword(k) for k in t.exclude_keywords) for t in topics]
    texts = [topic_text(t) for t in topics]
    chosen = similarities >= threshold if selected is None else selected
    matches: list[TopicMatch] = []
    for row, paper in enumerate(papers):
        text = paper_text(paper)
        found = index.find(text)
        words: frozenset[str] | None = None
        for column, topic in enumerate(topics):
            similarity = float(similarities[row, column])
            categories = tuple(c for c in paper.categories if c in topic.categories)
            keywords = tuple(k for k, n in zip(topic.keywords, wanted[column], strict=True) if n in found)
            if not (categories or keywords or chosen[row, column]):
                continue
            if any(n in found for n in unwanted[column]):
                continue
            bonus = min(KEYWORD_BONUS * len(keywords), MAX_KEYWORD_BONUS)
            if categories:
                primary = paper.primary_category in topic.categories
                bonus += PRIMARY_CATEGORY_BONUS if primary else OTHER_CATEGORY_BONUS
            kind, closest = scored.closest(row, column) if scored is not None else ("", "")
            said = " ".join(normalise_keyword(k) for k in keywords)
            words = word_set(text) if words is None else words
            terms = tuple(t for t in shared_terms(text, texts[column], paper_words=words) if t.rstrip("s") not in said)
            matches.append(
                TopicMatch(
                    paper_id=paper.paper_id,
                    topic=topic.slug,
                    strength=round(similarity + bonus, 4),
                    similarity=round(similarity, 4),
                    keywords=keywords,
                    categories=categories,
                    closest=closest,
                    closest_kind=kind,
                    terms=terms,
                )
            )
    return matches
