"""What a match rests on, kept so a reader can be told in words: the closest facet, example and shared words.

Why: a reason such as "similar to the topic description: 0.04" tells a reader nothing. Every similarity
method (TF-IDF, embeddings) therefore also reports, per paper and topic, which *facet* of the topic the paper
is closest to (a phrase of the description, a keyword, the name) or which example paper, and the words of
the topic that the paper uses. ``newsletter.records.papers.TopicMatch.reasons`` turns that into
"closest to ‘quantum information’; mentions ‘entanglement’".

Facets are split from the description at sentence punctuation, colons, semicolons and commas, never at
"and"/"or": splitting "quantum information and computing" gave the facet "computing", which sent a paper on
testing Scratch programs to quantum physics. A phrase of stop words only, or under four characters, is dropped; a
phrase is embedded in its topic's context ("Quantum physics: qubits", ``facet_embedding_text``), so one word
("analysis") keeps the meaning it has in that topic. Keywords, chosen by the operator, are kept as they are.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from newsletter.config import TopicSettings
from newsletter.records.papers import Paper

MIN_FACET_CHARS = 4
MAX_TERMS = 3
_FACET_BREAK = re.compile(r"[.;:,!?()]\s*")
_WORD = re.compile(r"[a-z][a-z0-9-]{2,}")
_OWN_STOP_WORDS = frozenset({
    "paper", "papers", "study", "studies", "method", "methods", "approach", "approaches", "based", "show",
    "shows", "work", "results", "problem", "problems", "general", "pure", "applied", "theory", "topic",
    "topics", "including", "related", "research", "using", "use", "used", "new",
})

TopicExamples = Mapping[str, tuple[Sequence[Paper], Sequence[Paper]]]
"""Per topic slug: its example papers and its not-example papers, resolved from the store."""


@functools.cache
def _stop_words() -> frozenset[str]:
    """scikit-learn's English stop words and ours; imported on first use, so `status` never loads scikit-learn."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _OWN_STOP_WORDS


def _words(text: str) -> list[str]:
    stop = _stop_words()
    return [w for w in _WORD.findall(text.lower()) if w not in stop]


def topic_phrases(topic: TopicSettings) -> list[str]:
    """The description's phrases, split at punctuation (never at "and"), that hold a word that is not a stop word."""
    phrases = [p.strip() for p in _FACET_BREAK.split(topic.description)]
    return [p for p in phrases if len(p) >= MIN_FACET_CHARS and _words(p)]


def topic_embedding_text(topic: TopicSettings) -> str:
    """A topic's name, description and keywords as one short text."""
    parts = [topic.name.strip().rstrip(".") + "."]
    if topic.description.strip():
        parts.append(topic.description.strip())
    if topic.keywords:
        parts.append("Keywords: " + ", ".join(topic.keywords) + ".")
    return " ".join(parts)


def facet_embedding_text(topic: TopicSettings, kind: str, text: str) -> str:
    """What a facet is embedded as: a description phrase is read in its topic's context ("Quantum physics: qubits").

    Why: a phrase alone ("qubits", "analysis") is ambiguous; in context it keeps its meaning (labelled fixtures,
    calibrated rule with self-training: macro-F1 0.72 → 0.76).
    """
    return f"{topic.name.strip()}: {text}" if kind == "phrase" else text


def topic_facets(topic: TopicSettings) -> list[tuple[str, str]]:
    """(kind, text) of what a topic is compared as: the whole topic, its name, each meaningful phrase, keywords.

    The first facet is always the whole topic text (kind "topic"): a reason never quotes it.
    """
    facets = [("topic", topic_embedding_text(topic)), ("name", topic.name.strip())]
    facets += [("phrase", p) for p in topic_phrases(topic)]
    facets += [("keyword", k.strip()) for k in topic.keywords]
    seen: set[str] = set()
    unique: list[tuple[str, str]] = []
    for kind, text in facets:
        if text.lower() not in seen and (len(text) >= MIN_FACET_CHARS or kind == "keyword") and text:
            seen.add(text.lower())
            unique.append((kind, text))
    return unique


def word_set(text: str) -> frozenset[str]:
    """The words of a text that ``shared_terms`` compares (lower case, no stop words)."""
    return frozenset(_words(text))


@functools.lru_cache(maxsize=256)
def _topic_words(topic_text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_words(topic_text)))


def shared_terms(paper_text: str, topic_text: str, *, limit: int = MAX_TERMS,
                 paper_words: frozenset[str] | None = None) -> tuple[str, ...]:
    """Words of the topic that the paper uses too (a plural "s" accepted), most specific (longest) first.

    ``paper_words`` (``word_set(paper_text)``) saves reading the paper again for each of its topics."""
    if paper_words is None:
        paper_words = word_set(paper_text)
    found: list[str] = []
    for word in _topic_words(topic_text):
        if word in paper_words or word + "s" in paper_words or (word.endswith("s") and word[:-1] in paper_words):
            found.append(word)
    found.sort(key=len, reverse=True)
    return tuple(found[:limit])


@dataclass(frozen=True)
class Scored:
    """Similarities of every row (the papers to match, then the background) with what each rests on."""

    similarities: np.ndarray
    """Rows × topics, between 0 and 1."""
    features: Any
    """One L2-normalised row per similarity row (embeddings or TF-IDF rows), for self-training."""
    facets: list[list[tuple[str, str]]]
    """Per topic, its facets as (kind, text) (``topic_facets``)."""
    closest_facet: np.ndarray
    """Rows × topics: the index of the closest facet."""
    examples: list[list[Paper]] = field(default_factory=list)
    """Per topic, its example papers (empty list: none)."""
    closest_example: np.ndarray | None = None
    """Rows × topics: the index of the closest example paper, -1 without examples."""
    example_closer: np.ndarray | None = None
    """Rows × topics: True where the closest example is closer than the closest facet."""

    def closest(self, row: int, column: int) -> tuple[str, str]:
        """(kind, text) of what the paper of ``row`` is closest to in topic ``column``; kind "" for nothing."""
        if self.closest_example is not None and self.example_closer is not None and self.example_closer[row, column]:
            index = int(self.closest_example[row, column])
            if index >= 0:
                return "example", self.examples[column][index].title
        kind, text = self.facets[column][int(self.closest_facet[row, column])]
        return ("", "") if kind == "topic" else (kind, text)


def reason_span(facets: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """The facets a reason may name, as a slice: the description's phrases, else the name, else the keywords.

    Not the whole topic text (index 0), nor the name when there are phrases ("closest to ‘Reasoning’" in the
    Reasoning section says nothing), nor keywords when there is anything else ("mentions ‘…’" names them).
    """
    kinds = [kind for kind, _ in facets]
    for wanted in ("phrase", "name", "keyword"):
        found = [i for i, kind in enumerate(kinds) if kind == wanted]
        if found:
            return found[0], found[-1] + 1
    return 0, 1
