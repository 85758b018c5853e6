"""Benchmark of per-reader ranking (issue 24, item 5): NDCG@10 of a reader's sections, with their votes
against the cold-start order, on simulated readers whose votes come from held-out labels.

Data: ``/work/shared/topics-dev/papers.csv`` (2,100 real arXiv abstracts, January–June 2026, 300 per primary
category; see its README), or ``--data``. The server is configured with ``--topics`` of its seven areas, each
described by one sentence as a reader would write it (open world: the other areas' papers belong to no
topic); categories are hidden from the matcher, so only the text decides. Papers are matched by the project's
matcher at default settings (``[matching]`` defaults; ``--method embedding`` for MiniLM vectors).

Readers: each receives one configured topic and wants, by a held-out label the system never sees,
* "area": papers whose primary category is the topic's (the matcher lets off-topic papers into the section;
  votes should push them down), or
* "niche": papers of the topic's area also listed in a second category (e.g. vision ∩ cs.AI, language ∩
  cs.LG): two readers of one topic who want different papers first.

Protocol: papers are ordered by arXiv id (time). The first ``--train-share`` are past editions: the reader
votes on ``n`` papers drawn at random from their past sections ("more" when the paper is relevant to them,
"less" otherwise). The rest are cut into editions of ``--edition-size`` papers; in each, the reader's section
(the papers matched to their topic) is ranked twice: by match strength (the cold start: today's shared order,
trending aside) and by match strength + the reader's rank adjustment from ``newsletter.editions.preferences
.reader_boosts`` (the code `send` runs). NDCG@10 (binary relevance) is averaged over editions with at least
one relevant paper, then over readers and ``--seeds`` draws of votes.

    python bench/reader_ranking.py                       # tfidf, votes 0 2 5 10 20
    python bench/reader_ranking.py --method embedding    # MiniLM vectors (embeds 2,100 papers once)
    python bench/reader_ranking.py --send-cost 1000      # CPU of the per-reader models at send time
    python bench/reader_ranking.py --max-loss 0.01       # exit 1 if votes make a kind of reader worse off
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path("/work/shared/topics-dev/papers.csv")

DESCRIPTIONS = {
    "cs.CV": ("vision", "Computer vision", "Computer vision: recognising, segmenting, tracking and generating images "
              "and video."),
    "cs.CL": ("language", "Language", "Natural language processing and large language models for text."),
    "cs.AI": ("ai", "Artificial intelligence", "Artificial intelligence: reasoning, planning, knowledge "
              "representation and intelligent agents."),
    "cs.IT": ("infotheory", "Information theory", "Information theory: channel capacity, coding and "
              "communication systems."),
    "cs.GT": ("gametheory", "Game theory", "Game theory and mechanism design: equilibria, auctions and "
              "strategic agents."),
    "cs.CE": ("compeng", "Computational engineering", "Computational engineering and science: numerical "
              "simulation of physical systems, finance and design."),
    "cs.GR": ("graphics", "Graphics", "Computer graphics: rendering, geometry, meshes and animation."),
}
NICHES = {"cs.CV": ("cs.AI", "cs.LG"), "cs.CL": ("cs.AI", "cs.LG"), "cs.GT": ("cs.AI", "econ.TH"),
          "cs.GR": ("cs.CV",), "cs.AI": ("cs.CL", "cs.LG")}
"""Second categories that make a niche reader: only pairs with 25 or more papers in the data."""


@dataclass(frozen=True)
class Row:
    paper: Any
    primary: str
    categories: frozenset[str]


@dataclass(frozen=True)
class Reader:
    kind: str
    topic: str
    """The configured slug the reader receives."""
    wants: Callable[[Row], bool]
    label: str


def load(path: Path) -> list[Row]:
    from newsletter.records.papers import Paper

    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle):
            paper = Paper(paper_id=raw["arxiv_id"], title=raw["title"], abstract=raw["abstract"])
            rows.append(Row(paper, raw["primary"], frozenset(raw["categories"].split())))
    return sorted(rows, key=lambda r: r.paper.paper_id)


def _wants(area: str, second: str | None) -> Callable[[Row], bool]:
    def wants(row: Row) -> bool:
        return row.primary == area and (second is None or second in row.categories)

    return wants


def readers(configured: Sequence[str]) -> list[Reader]:
    result = []
    for area in configured:
        slug = DESCRIPTIONS[area][0]
        result.append(Reader("area", slug, _wants(area, None), f"{slug}: {area}"))
        for second in NICHES.get(area, ()):
            result.append(Reader("niche", slug, _wants(area, second), f"{slug}: {area} ∩ {second}"))
    return result


def match(rows: Sequence[Row], configured: Sequence[str], method: str) -> dict[str, dict[str, float]]:
    """Per topic slug: ``{paper_id: strength}`` of the papers the project's matcher puts there."""
    from newsletter.config import MatchingSettings, TopicSettings
    from newsletter.matching.matcher import build_matcher

    topics = [TopicSettings(slug=DESCRIPTIONS[a][0], name=DESCRIPTIONS[a][1], description=DESCRIPTIONS[a][2])
              for a in configured]
    matcher = build_matcher(MatchingSettings(method=method))  # type: ignore[arg-type]
    papers = [r.paper for r in rows]
    result: dict[str, dict[str, float]] = {t.slug: {} for t in topics}
    for m in matcher.match(papers, topics, background=papers):
        result[m.topic][m.paper_id] = m.strength
    return result


def vectors_of(rows: Sequence[Row], method: str) -> Mapping[str, Any] | None:
    if method != "embedding":
        return None
    from newsletter.config import MatchingSettings
    from newsletter.matching.embeddings import MiniLMEncoder
    from newsletter.matching.rules import paper_text

    encoder = MiniLMEncoder(max_tokens=MatchingSettings().embedding_max_tokens)
    matrix = encoder.encode([paper_text(r.paper) for r in rows])
    return {r.paper.paper_id: matrix[i] for i, r in enumerate(rows)}


def edition_of(section: Mapping[str, float], by_id: Mapping[str, Row], slug: str) -> Any:
    """An edition record holding one topic's section, as `send` would see it."""
    from newsletter.records.editions import Edition, EditionEntry, EditionPaper, EditionTopic

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    papers = {pid: EditionPaper(paper_id=pid, title=by_id[pid].paper.title, abstract=by_id[pid].paper.abstract)
              for pid in section}
    entries = tuple(EditionEntry(paper_id=pid, strength=s, rank=s)
                    for pid, s in sorted(section.items(), key=lambda x: (-x[1], x[0])))
    return Edition(id=1, frequency="daily", date=date(2026, 1, 1), slug="bench", window_start=moment, cutoff=moment,
                   created=moment, papers=papers, topics=(EditionTopic(slug=slug, name=slug, entries=entries),))


def ndcg_at_10(ranked: Sequence[str], relevant: set[str]) -> float:
    gains = [1.0 if pid in relevant else 0.0 for pid in ranked[:10]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(10, len(relevant & set(ranked)))))
    return dcg / ideal if ideal else float("nan")


def evaluate(rows: Sequence[Row], configured: Sequence[str], *, method: str, votes: Sequence[int], seeds: int,
             train_share: float, edition_size: int) -> dict[str, Any]:
    from newsletter.editions.preferences import reader_boosts

    started = time.process_time()
    sections = match(rows, configured, method)
    match_seconds = time.process_time() - started
    vectors = vectors_of(rows, method)
    by_id = {r.paper.paper_id: r for r in rows}
    cut = int(len(rows) * train_share)
    past, future = rows[:cut], rows[cut:]
    editions = [future[i : i + edition_size] for i in range(0, len(future), edition_size)]
    table: dict[str, dict[int, list[float]]] = {}
    fit_seconds = 0.0
    for reader in readers(configured):
        section = sections[reader.topic]
        past_section = [r for r in past if r.paper.paper_id in section]
        scores: dict[int, list[float]] = {n: [] for n in votes}
        for n in votes:
            for seed in range(seeds if n else 1):
                drawn = random.Random(f"{reader.label}:{n}:{seed}").sample(past_section, min(n, len(past_section)))
                mine = {r.paper.paper_id: (1 if reader.wants(r) else -1) for r in drawn}
                per_edition = []
                for batch in editions:
                    today = {r.paper.paper_id: section[r.paper.paper_id] for r in batch if r.paper.paper_id in section}
                    relevant = {pid for pid in today if reader.wants(by_id[pid])}
                    if not relevant:
                        continue
                    edition = edition_of(today, by_id, reader.topic)
                    tick = time.process_time()
                    boosts = reader_boosts(edition, {1: mine}, {pid: by_id[pid].paper for pid in mine},
                                           {1: [reader.topic]}, vectors=vectors).get(1, {}) if mine else {}
                    fit_seconds += time.process_time() - tick
                    ranked = sorted(today, key=lambda pid: (-(today[pid] + boosts.get(pid, 0.0)), pid))
                    per_edition.append(ndcg_at_10(ranked, relevant))
                if per_edition:
                    scores[n].append(statistics.fmean(per_edition))
        table[reader.label] = scores
    return {"table": table, "match_cpu_s": match_seconds, "fit_cpu_s": fit_seconds, "editions": len(editions),
            "sections": {slug: len(papers) for slug, papers in sections.items()}}


def send_cost(rows: Sequence[Row], configured: Sequence[str], *, readers_count: int, votes: int) -> dict[str, float]:
    """CPU seconds of ``reader_boosts`` for one edition (the last 300 papers, every configured topic) and
    ``readers_count`` readers with ``votes`` votes each on earlier papers: what `send` adds for voting readers."""
    from newsletter.editions.preferences import reader_boosts
    from newsletter.records.editions import Edition, EditionEntry, EditionPaper, EditionTopic

    sections = match(rows, configured, "tfidf")
    by_id = {r.paper.paper_id: r for r in rows}
    recent, earlier = rows[-300:], rows[:-300]
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    topics = tuple(EditionTopic(slug=slug, name=slug, entries=tuple(
        EditionEntry(paper_id=r.paper.paper_id, strength=papers[r.paper.paper_id], rank=papers[r.paper.paper_id])
        for r in recent if r.paper.paper_id in papers)) for slug, papers in sections.items())
    edition = Edition(id=1, frequency="daily", date=date(2026, 1, 1), slug="bench", window_start=moment,
                      cutoff=moment, created=moment, topics=topics,
                      papers={r.paper.paper_id: EditionPaper(paper_id=r.paper.paper_id, title=r.paper.title,
                                                             abstract=r.paper.abstract) for r in recent})
    slugs = list(sections)
    chooser = random.Random(0)
    all_votes = {i: {r.paper.paper_id: chooser.choice((1, -1)) for r in chooser.sample(earlier, votes)}
                 for i in range(readers_count)}
    topics_of = {i: [slugs[i % len(slugs)]] for i in range(readers_count)}
    voted = {pid: by_id[pid].paper for theirs in all_votes.values() for pid in theirs}
    tick = time.process_time()
    boosts = reader_boosts(edition, all_votes, voted, topics_of)
    seconds = time.process_time() - tick
    return {"cpu_s": seconds, "per_reader_ms": 1000 * seconds / readers_count, "readers": float(len(boosts))}


def report(result: Mapping[str, Any], votes: Sequence[int]) -> str:
    lines = ["| reader (topic: wants) | " + " | ".join(f"{n} votes" if n else "cold start" for n in votes) + " |",
             "|---|" + "---:|" * len(votes)]
    means: dict[str, dict[int, list[float]]] = {"area": {n: [] for n in votes}, "niche": {n: [] for n in votes}}
    for label, scores in result["table"].items():
        kind = "niche" if "∩" in label else "area"
        cells = []
        for n in votes:
            value = statistics.fmean(scores[n]) if scores[n] else float("nan")
            means[kind][n].append(value)
            cells.append(f"{value:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for kind, per_n in means.items():
        cells = [f"**{statistics.fmean(per_n[n]):.3f}**" if per_n[n] else "–" for n in votes]
        lines.append(f"| mean over {kind} readers | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def losses(result: Mapping[str, Any], votes: Sequence[int], tolerance: float) -> list[str]:
    """Per kind of reader and vote count: a line for every mean NDCG@10 below the kind's cold start by more
    than ``tolerance`` (the rule must not make readers worse off on average)."""
    found = []
    for kind in ("area", "niche"):
        rows = [scores for label, scores in result["table"].items() if ("∩" in label) == (kind == "niche")]
        mean = {n: statistics.fmean(statistics.fmean(s[n]) for s in rows if s[n]) for n in votes}
        for n in votes:
            if n and mean[n] < mean[0] - tolerance:
                found.append(f"{kind} readers with {n} votes: {mean[n]:.3f} < cold start {mean[0]:.3f}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--topics", nargs="+", default=["cs.CV", "cs.CL", "cs.GT", "cs.GR"],
                        help="primary categories configured as topics (the others are off-topic papers)")
    parser.add_argument("--method", choices=["tfidf", "embedding"], default="tfidf")
    parser.add_argument("--votes", type=int, nargs="+", default=[0, 2, 5, 10, 20])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train-share", type=float, default=0.4)
    parser.add_argument("--edition-size", type=int, default=150)
    parser.add_argument("--send-cost", type=int, metavar="READERS", default=0,
                        help="instead: time reader_boosts for this many readers with 10 votes each")
    parser.add_argument("--max-loss", type=float, metavar="NDCG", default=None,
                        help="exit 1 when a kind of reader's mean falls below its cold start by more than this "
                             "(needs 0 among --votes)")
    args = parser.parse_args(argv)
    rows = load(args.data)
    if args.send_cost:
        cost = send_cost(rows, args.topics, readers_count=args.send_cost, votes=10)
        print(f"reader_boosts for {args.send_cost} readers with 10 votes, one edition of 300 papers: "
              f"{cost['cpu_s']:.1f} CPU-s ({cost['per_reader_ms']:.1f} ms per reader); "
              f"load average {os.getloadavg()[0]:.2f}")
        return 0
    result = evaluate(rows, args.topics, method=args.method, votes=args.votes, seeds=args.seeds,
                      train_share=args.train_share, edition_size=args.edition_size)
    print(f"{len(rows)} papers, topics {' '.join(args.topics)}, method {args.method}, "
          f"{result['editions']} test editions of {args.edition_size}; section sizes {result['sections']}")
    print(f"matching: {result['match_cpu_s']:.1f} CPU-s; per-reader models: {result['fit_cpu_s']:.1f} CPU-s; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(report(result, args.votes))
    if args.max_loss is not None and 0 in args.votes:
        worse = losses(result, args.votes, args.max_loss)
        for line in worse:
            print(f"worse than the cold start by more than {args.max_loss}: {line}")
        return 1 if worse else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
