"""The TL;DR of a card: how fast, and how close to Hugging Face's AI summaries, against the first sentence.

Why: every card shows a TL;DR of at most 220 characters instead of a 600-character abstract
(``newsletter.records.summaries``). Hugging Face's AI summaries, written by a language model from the same
abstract, are the nearest thing to a reference a local, offline benchmark has: on the papers that have one,
ROUGE-L (F1, stemmed; Google's ``rouge-score``) of the extractive TL;DR against it, compared with the
"first sentence of the abstract" baseline fitted to the same 220 characters.

How: every Hugging Face daily-papers snapshot in examples/feeds (and /work/shared/feeds/hf_daily_papers when
present) parsed by the project's own parser; papers with both an abstract and an AI summary. Time is per
paper, uncached (the cache is cleared before each pass), best of 5 passes.

    python bench/summaries.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rouge_score import rouge_scorer  # noqa: E402

from newsletter.records.papers import Paper  # noqa: E402
from newsletter.records.summaries import TLDR_CHARS, extractive_tldr, first_sentence  # noqa: E402
from newsletter.records.text import html_to_text  # noqa: E402
from newsletter.sources.parsing import parse_hf_daily  # noqa: E402

FOLDERS = (ROOT / "examples" / "feeds", Path("/work/shared/feeds/hf_daily_papers"))


def papers_with_ai_summaries() -> list[Paper]:
    found: dict[str, Paper] = {}
    for folder in FOLDERS:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                parsed = parse_hf_daily(path.read_bytes(), source=path.name)
            except Exception:  # noqa: BLE001 - a snapshot of another shape is not a benchmark input
                continue
            for paper in parsed.papers:
                if paper.ai_summary and paper.abstract:
                    found.setdefault(paper.paper_id, paper)
    return list(found.values())


def main() -> int:
    papers = papers_with_ai_summaries()
    if not papers:
        print("no papers with a Hugging Face AI summary found")
        return 1
    abstracts = [html_to_text(p.abstract) for p in papers]
    references = [html_to_text(p.ai_summary) for p in papers]
    timings: dict[str, float] = {}
    outputs: dict[str, list[str]] = {}
    for name, method in (("extractive TL;DR", extractive_tldr), ("first sentence", first_sentence)):
        best = float("inf")
        for _ in range(5):
            method.cache_clear()
            started = time.perf_counter()
            result = [method(a, TLDR_CHARS) for a in abstracts]
            best = min(best, time.perf_counter() - started)
        timings[name] = best / len(abstracts) * 1000
        outputs[name] = result
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    print(f"{len(papers)} papers with an abstract and a Hugging Face AI summary; limit {TLDR_CHARS} characters")
    print("| method | ROUGE-L F1 (mean) | median | mean length | longest | ms per paper |")
    print("|---|---:|---:|---:|---:|---:|")
    scores: dict[str, float] = {}
    for name, result in outputs.items():
        f1 = [scorer.score(r, s)["rougeL"].fmeasure for r, s in zip(references, result, strict=True)]
        scores[name] = statistics.fmean(f1)
        lengths = [len(s) for s in result]
        print(f"| {name} | {scores[name]:.3f} | {statistics.median(f1):.3f} | {statistics.fmean(lengths):.0f} | "
              f"{max(lengths)} | {timings[name]:.3f} |")
    return 0 if max(len(s) for s in outputs["extractive TL;DR"]) <= TLDR_CHARS else 1


if __name__ == "__main__":
    raise SystemExit(main())
