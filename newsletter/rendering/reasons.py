"""Why a paper is in a reader's section, in human words: the topic's name and at most two telling terms.

Why: the matcher explains itself for an operator ("closest to ‘and models that combine vision’; mentions
‘models’, ‘large’, ‘llm’"). A reader needs less: which of their topics, and the one or two words of the paper
that put it there ("LLM agents: tool use, multi-agent"). Filler that every paper of the field says
("models", "large", "language"), terms the topic's name already says, a word repeated in another form
("budget" after "budgets") and phrase fragments that start or end on a function word are dropped. A reason
with no quoted terms (a rule's own wording) passes through, without a trailing bare score.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

QUOTED = re.compile(r"‘([^’]{1,60})’")
ANY_QUOTE = re.compile(r"‘[^’]*’")
"""A quoted term of any length: a reason with one is the matcher's wording, never shown as it is."""
MENTIONS = re.compile(r"mentions? ((?:‘[^’]{1,60}’(?:, )?)+)")
CLOSEST = re.compile(r"closest to ‘([^’]{1,80})’")
BARE_SCORE = re.compile(r"\s*[:=]\s*[-+]?\d+(?:\.\d+)?\s*$")
MAX_TERMS = 2
MAX_PHRASE_WORDS = 3
FILLER = frozenset({
    "a", "an", "the", "and", "or", "of", "for", "in", "on", "to", "with", "that", "this", "these", "those",
    "by", "from", "as", "at", "via", "into", "over", "under", "using", "based", "model", "models", "large",
    "language", "languages", "llm", "llms", "learning", "method", "methods", "approach", "approaches", "system",
    "systems", "data", "task", "tasks", "results", "performance", "new", "paper", "study", "framework",
    "frameworks", "network", "networks", "neural", "deep", "training", "trained", "generation", "generative",
    "ai", "artificial", "intelligence", "machine", "analysis", "problem", "problems", "benchmark", "benchmarks",
    "evaluation", "efficient", "effective", "novel", "state", "art", "information",
})
"""Words that say nothing about why this paper is in this topic (nearly every paper of the field says them)."""
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "and", "or", "of", "for", "in", "on", "to", "with", "that", "which", "who", "by", "from",
    "as", "at", "into",
})


def reason_in_words(reason: str) -> str:
    """A match reason without a trailing bare number ("similar to the topic description: 0.04")."""
    return BARE_SCORE.sub("", reason)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w]+", text.lower())


def _stems(words: Iterable[str]) -> set[str]:
    """Crude stems (the first five letters): "agent" and "agents", "budget" and "budgets" are one word here."""
    return {w[:5] for w in words if w not in FUNCTION_WORDS}


def _telling(term: str, taken: list[str], topic_words: set[str]) -> bool:
    words = _words(term)
    if not words or words[0] in FUNCTION_WORDS or words[-1] in FUNCTION_WORDS or len(words) > MAX_PHRASE_WORDS:
        return False  # a fragment ("and models that combine vision"), not a term
    if "or" in words:
        return False  # an alternative out of the topic's text ("memory or data"), not what the paper says
    meaningful = _stems(w for w in words if w not in FILLER)
    if not meaningful or meaningful <= _stems(topic_words):
        return False  # filler, or what the topic's name already says
    return not any(meaningful & _stems(_words(t)) for t in taken)  # "memory" after "memory-efficient"


def reason_terms(topic: str, reasons: Iterable[str]) -> str:
    """"LLM agents: tool use, multi-agent" — the topic and at most two telling terms of the matcher's
    reasons (those it says the paper mentions first, then the phrase of the topic it is closest to)."""
    reasons = [r for r in (reason_in_words(r) for r in reasons) if r]
    topic_words = set(_words(topic))
    candidates: list[str] = []
    for reason in reasons:
        for group in MENTIONS.findall(reason):
            candidates.extend(QUOTED.findall(group))
    for reason in reasons:
        candidates.extend(CLOSEST.findall(reason))
    terms: list[str] = []
    for term in candidates:
        if len(terms) < MAX_TERMS and _telling(term, terms, topic_words):
            terms.append(term)
    if terms:
        return f"{topic}: {', '.join(terms)}"
    unquoted = [r for r in reasons if not ANY_QUOTE.search(r)]
    return f"{topic}: {unquoted[0]}" if unquoted else topic
