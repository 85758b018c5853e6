"""A one- or two-sentence TL;DR of a paper, computed locally from its abstract (extractive, no model).

Why: a card that shows a 600-character abstract makes a 6-topic email about 28 phone screens tall, and an
abstract's first sentence is usually background ("Large language models are increasingly used…"), not what
the paper did. The TL;DR keeps the abstract's own sentences that state the contribution and the result,
chosen by cue words (``we propose``, ``outperforms``, a number with ``%`` …) and position, in their original
order, within ``limit`` characters. A sentence longer than the limit is cut after a clause (ending with
"."), or at a word with "…" when no clause fits. Hugging Face's AI summary, when a paper has one, is fitted
to the same limit the same way (``fit_summary``); it is the caller's job to label it.

Pure and deterministic; results are cached in-process by text (``lru_cache``), so a paper that appears in
several variants of an edition, or in every try of the size budget, is summarised once per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from newsletter.records.text import collapse_whitespace, shorten

TLDR_CHARS = 220
"""The longest TL;DR a card shows (about two lines at 600 px, four on a phone)."""

_ABBREVIATIONS = re.compile(r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|Fig|Figs|Eq|Sec|approx|resp|No|Dr|Prof)\.|\b[A-Z]\.)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[\"“(\[]?[A-Z0-9])")
_OPENER = re.compile(r"^(?:In this (?:paper|work|study|article|letter)|[A-Z][\w-]*(?: [\w-]+){0,3}),\s+(?=we\b)")
"""A short lead-in before "we" ("In this paper, we …", "Crucially, we …", "To this end, we …")."""
_CONTRIBUTION = re.compile(
    r"\b(?:we|this (?:paper|work|study)|our (?:method|approach|framework|model|system))\s+(?:\w+\s+){0,2}?"
    r"(?:propose|introduce|present|develop|design|build|release|construct|formulate|establish|derive|offer|"
    r"contribute|curate|create|train|show|find|demonstrate|prove|reveal|identify|study|investigate|analy[sz]e)",
    re.IGNORECASE)
_NAMED = re.compile(r"\b(?:called|named|dubbed|termed)\b|^[A-Z][\w-]*[A-Z][\w-]*(?:\s*\([^)]*\))?\s*(?:,|is|uses|"
                    r"achieves|introduces|improves|enables)\b")
_RESULT = re.compile(
    r"\b(?:outperform\w*|achiev\w*|improv\w*|reduc\w*|surpass\w*|exceed\w*|speed-?ups?|state[- ]of[- ]the[- ]art|"
    r"SOTA|results? (?:show|demonstrate|indicate|reveal)|experiments? (?:show|demonstrate|on)|"
    r"significantly|consistently|matches|up to|faster|fewer|lower|higher|better)\b|\d+(?:\.\d+)?\s?(?:%|×|x\b)",
    re.IGNORECASE)
_BACKGROUND = re.compile(
    r"\b(?:recent(?:ly)?|however|remains?|challeng\w*|increasingly|widely|existing|despite|suffer\w*|"
    r"crucial|critical|important|limited|limitations?|have (?:shown|become|emerged|achieved|gained|been)|"
    r"has (?:become|emerged|been)|is (?:a|an) (?:fundamental|key|central|core|popular)|"
    r"growing|promising|lack|hinder\w*|struggle\w*|often|typically|traditional\w*|conventional\w*|"
    r"prior (?:work|methods?)|previous (?:work|methods?|approaches))\b", re.IGNORECASE)
_CODE_LINE = re.compile(r"\b(?:code|data|models?|weights|datasets?|benchmark) (?:is|are|will be) (?:publicly )?"
                        r"(?:available|released)|https?://|github\.com", re.IGNORECASE)
_CLAUSE = re.compile(r"(?:,|;| —| –| -)\s+")
_MIN_CLAUSE = 90
"""A sentence cut after a clause keeps at least this many characters; otherwise it is cut at a word."""


def split_sentences(text: str) -> list[str]:
    """The sentences of a plain-text abstract ("e.g.", "et al.", "Fig. 2" and initials do not end one)."""
    pieces = _SENTENCE_END.split(collapse_whitespace(text))
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ABBREVIATIONS.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


def fit_sentence(sentence: str, limit: int) -> str:
    """``sentence`` within ``limit`` characters: whole, else up to its last clause that fits (ending with "."),
    else cut at a word with "…"."""
    if len(sentence) <= limit:
        return sentence
    best = ""
    for match in _CLAUSE.finditer(sentence):
        head = sentence[: match.start()].rstrip()
        if len(head) + 1 > limit:
            break
        if head.count("(") == head.count(")"):
            best = head
    if len(best) >= min(_MIN_CLAUSE, limit // 2):
        return best.rstrip(".:") + "."
    return shorten(sentence, limit - 1)


@dataclass(frozen=True)
class _Scored:
    index: int
    text: str
    contribution: float
    result: float


def _score(index: int, sentence: str) -> _Scored:
    contribution = 0.0
    result = 0.0
    if _CONTRIBUTION.search(sentence):
        contribution += 3.0
    if _NAMED.search(sentence):
        contribution += 1.5
    hits = len(_RESULT.findall(sentence))
    result += min(hits, 3) * 1.0
    penalty = min(len(_BACKGROUND.findall(sentence)), 3) * 1.0
    if index == 0 and not contribution:
        penalty += 1.5  # an abstract's opener is background unless it names what the paper does
    if _CODE_LINE.search(sentence):
        penalty += 4.0  # "Code is available at …" says nothing about the paper
    if len(sentence) < 40:
        penalty += 1.0
    return _Scored(index, sentence, contribution - penalty, result - penalty)


def _tidy(sentence: str) -> str:
    """"In this paper, we propose …" → "We propose …": the framing adds length, not meaning."""
    stripped = _OPENER.sub("", sentence, count=1)
    return stripped[:1].upper() + stripped[1:] if stripped != sentence else sentence


@lru_cache(maxsize=8192)
def extractive_tldr(abstract: str, limit: int = TLDR_CHARS) -> str:
    """The abstract's contribution sentence, plus its best result sentence when both fit ``limit``."""
    sentences = [_tidy(s) for s in split_sentences(abstract)]
    if not sentences:
        return ""
    scored = [_score(i, s) for i, s in enumerate(sentences)]

    def lead_value(s: _Scored) -> float:
        cut = 1.5 if len(s.text) > limit else 0.0  # a whole sentence reads better than a cut one
        return s.contribution + 0.5 * s.result - cut - 0.05 * s.index

    lead = max(scored, key=lead_value)
    chosen = [lead]
    room = limit - len(lead.text) - 1
    others = [s for s in scored if s is not lead and len(s.text) <= room and s.result > 0]
    if others:
        chosen.append(max(others, key=lambda s: (s.result + 0.5 * s.contribution, -s.index)))
    if len(chosen) == 1:
        return fit_sentence(lead.text, limit)
    return " ".join(s.text for s in sorted(chosen, key=lambda s: s.index))


@lru_cache(maxsize=8192)
def fit_summary(summary: str, limit: int = TLDR_CHARS) -> str:
    """A summary someone else wrote (Hugging Face's AI summary), its leading sentences within ``limit``."""
    sentences = split_sentences(summary)
    if not sentences:
        return ""
    kept = fit_sentence(sentences[0], limit)
    for sentence in sentences[1:]:
        if len(kept) + 1 + len(sentence) > limit or kept.endswith("…"):
            break
        kept = f"{kept} {sentence}"
    return kept


@lru_cache(maxsize=8192)
def first_sentence(abstract: str, limit: int = TLDR_CHARS) -> str:
    """The baseline the benchmark compares with: the abstract's first sentence, fitted to ``limit``."""
    sentences = split_sentences(abstract)
    return fit_sentence(sentences[0], limit) if sentences else ""
