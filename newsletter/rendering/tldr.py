"""A card's TL;DR of one paper, and the text it is made from (the key under which it is stored).

Hugging Face's AI summary, fitted to 220 characters, when the paper has one; else the extractive TL;DR of the
abstract (``records.summaries``). Both are made from the text after LaTeX is turned into plain text, so the
hash of that text (``source_hash``) changes exactly when the TL;DR could.
"""

from __future__ import annotations

import hashlib

from newsletter.records.editions import EditionPaper
from newsletter.records.summaries import extractive_tldr, fit_summary
from newsletter.records.text import collapse_whitespace
from newsletter.rendering.latex import latex_to_text

TLDR_VERSION = "1"
"""Part of every stored TL;DR's hash: raise it when the summariser changes, and every stored one is made again."""


def tldr_source(paper: EditionPaper) -> str:
    """What the TL;DR summarises: the AI summary when there is one, else the abstract, as plain text."""
    return latex_to_text(collapse_whitespace(paper.ai_summary or paper.abstract))


def source_hash(paper: EditionPaper) -> str:
    """The key a stored TL;DR is valid for: its kind, the summariser version and the text."""
    kind = "ai" if paper.ai_summary else "abstract"
    return hashlib.sha256(f"{TLDR_VERSION}:{kind}:{tldr_source(paper)}".encode()).hexdigest()[:32]


def card_tldr(paper: EditionPaper) -> str:
    """The TL;DR a card shows when no endpoint wrote one (``[email.tldr]``)."""
    source = tldr_source(paper)
    return fit_summary(source) if paper.ai_summary else extractive_tldr(source)
