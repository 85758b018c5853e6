"""Optional: TL;DRs written by an operator's OpenAI-compatible endpoint (a local llama.cpp server, Ollama, …).

Why: the extractive TL;DR (``newsletter.records.summaries``) can only reuse the abstract's sentences; a model
can say the same in fewer words. Only when ``[email.tldr] endpoint`` is set, and never at any cost: all the
edition's papers share one time budget (``seconds``, a few requests at a time), an answer is kept only
when it passes a faithfulness guard — at most 220 characters, one paragraph, and no number, acronym or
capitalised name that the title and abstract lack — and every paper without a kept answer (timeout, error,
refusal by the guard, budget spent) gets the extractive TL;DR as before. Papers with a Hugging Face AI
summary keep it. Nothing here is stored: the answers live for one send, preview or copy.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import httpx

from newsletter.config import Settings
from newsletter.records.editions import Edition, EditionPaper
from newsletter.records.summaries import TLDR_CHARS
from newsletter.records.text import collapse_whitespace, html_to_text

log = logging.getLogger(__name__)

CONCURRENCY = 4
PROMPT = ("Write a TL;DR of this paper in one or two sentences, at most {limit} characters: what it does and "
          "its main result. Use only facts from the abstract. Answer with the TL;DR only.\n\n"
          "Title: {title}\n\nAbstract: {abstract}")
_CHECKED = re.compile(r"\b\w*\d[\w.,%]*|\b[A-Z][\w-]*[A-Z][\w-]*\b|(?<![.!?:]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
"""Numbers, acronyms and CamelCase names, and capitalised words not at a sentence's start."""


def unfaithful_terms(tldr: str, source: str) -> list[str]:
    """The numbers and names of ``tldr`` that ``source`` (title and abstract) lacks."""
    known = source.lower()
    return [term for term in (m.group(0).rstrip(".,") for m in _CHECKED.finditer(tldr)) if term.lower() not in known]


def accepted(answer: str, source: str, limit: int = TLDR_CHARS) -> str | None:
    """The answer as a TL;DR, or None when the guard refuses it (too long, empty, invents a number or name)."""
    text = collapse_whitespace(answer).strip().strip("\"'“”")
    if text.lower().startswith("tl;dr:"):
        text = text[6:].strip()
    if not text or len(text) > limit or unfaithful_terms(text, source):
        return None
    return text


def _ask(client: httpx.Client, settings: Settings, paper: EditionPaper, timeout: float) -> str | None:
    tldr = settings.email.tldr
    source = f"{collapse_whitespace(paper.title)}\n{html_to_text(paper.abstract)}"
    key = os.environ.get(tldr.api_key_env, "") if tldr.api_key_env else ""
    response = client.post(
        f"{tldr.endpoint.rstrip('/')}/chat/completions",
        json={"model": tldr.model or "default", "temperature": 0, "max_tokens": 120,
              "messages": [{"role": "user", "content": PROMPT.format(limit=TLDR_CHARS, title=paper.title,
                                                                     abstract=html_to_text(paper.abstract))}]},
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=max(0.1, timeout),
    )
    response.raise_for_status()
    answer = response.json()["choices"][0]["message"]["content"]
    return accepted(str(answer), source) if isinstance(answer, str) else None


def model_tldrs(settings: Settings, papers: Iterable[EditionPaper]) -> dict[str, str]:
    """TL;DRs by paper id from the configured endpoint, within the time budget; {} when none is configured."""
    tldr = settings.email.tldr
    todo = [p for p in papers if not p.ai_summary and p.abstract]
    if not tldr.endpoint or not todo:
        return {}
    now = time.monotonic
    deadline = now() + tldr.seconds
    kept: dict[str, str] = {}
    refused = failed = 0
    pool = ThreadPoolExecutor(CONCURRENCY)
    with httpx.Client() as client:
        pending: dict[Future[str | None], EditionPaper] = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < CONCURRENCY and now() < deadline:
                paper = queue.pop(0)
                pending[pool.submit(_ask, client, settings, paper, deadline - now())] = paper
            if not pending:
                break
            done, _ = wait(pending, timeout=max(0.0, deadline - now()), return_when=FIRST_COMPLETED)
            if not done:
                break  # the budget is spent: what is still asked is not waited for
            for future in done:
                paper = pending.pop(future)
                try:
                    answer = future.result()
                except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
                    failed += 1
                    log.debug("tldr endpoint: %s: %s", paper.paper_id, type(error).__name__)
                    continue
                if answer is None:
                    refused += 1
                else:
                    kept[paper.paper_id] = answer
        pool.shutdown(wait=False, cancel_futures=True)  # a request still running ends at its own timeout
    log.info("tldr endpoint: %d of %d papers summarised (%d refused by the guard, %d failed); the rest extractive",
             len(kept), len(todo), refused, failed)
    return kept


def edition_tldrs(settings: Settings, edition: Edition) -> Mapping[str, str]:
    """``model_tldrs`` for every paper of an edition (any reader may be shown any of them)."""
    return model_tldrs(settings, edition.papers.values())
