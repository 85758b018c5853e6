"""Labelled open-world sets for ``bench/topics.py`` (issue 24): papers labelled by primary category, a topic table.

A set is a CSV file with the columns of ``../shared/topics-dev/papers.csv`` (``arxiv_id``, ``title``, ``abstract``,
``categories``: the paper's arXiv categories, primary first, space-separated; ``primary``). Its topic table is a JSON
file ``{category: {"slug": …, "name": …, "description": …}}``: one topic per area, described by one sentence as a
reader would write it (``bench/data/topics-other/``).

Shapes measured, each with the categories hidden from the matcher:

- *open*: ``size`` of the N areas configured, the papers of the others labelled with no topic. Every combination
  when there are at most ``sample`` (35) of them, else 35 drawn with a fixed seed (10 areas: 35 of
  the 210); the mean and the worst are reported;
- *named*: the configuration of the hidden set of issue 24 (robotics, speech and audio, security, code), when the
  table has all four areas;
- *closed*: all N configured.

Each run is scored two ways. **Strict**: the primary category is the only right answer, exactly as
``newsletter.matching.evaluate`` scores a labelled sample (and as topics-dev is scored). **Lenient**: a paper listed
in a configured area (primary or cross-list) is a fair answer for that area's topic: a match counts as correct when
the paper lists the topic's category; a paper counts as found when it matched at least one topic whose category it
lists; off-topic papers are those listed in none of the configured areas.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("arxiv_id", "title", "abstract", "categories", "primary")
HIDDEN_SET_ANALOGUE = ("cs.RO", "cs.SD", "cs.CR", "cs.SE")
"""The hidden set's four configured topics (robotics, speech and audio, security of AI, code generation)."""


class OpenSetError(ValueError):
    """A set or topic table that cannot be used; the message names the file and, for a CSV, the line."""


@dataclass(frozen=True)
class Area:
    """One area of a set: its arXiv category and the topic a reader would configure for it."""

    code: str
    slug: str
    name: str
    description: str


@dataclass(frozen=True)
class Row:
    paper: Any
    """A ``newsletter.records.papers.Paper`` with its categories hidden."""
    primary: str
    categories: tuple[str, ...]


def areas_from_mapping(mapping: Mapping[str, tuple[str, str, str]]) -> list[Area]:
    """The areas of a ``{category: (slug, name, description)}`` table (``DEV_TOPICS``), in category order."""
    return [Area(code, *mapping[code]) for code in sorted(mapping)]


def read_topic_table(path: Path) -> list[Area]:
    """The areas of a JSON topic table, in category order; OpenSetError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OpenSetError(f"{path}: cannot read it as a JSON topic table: {error}") from None
    if not isinstance(data, dict) or len(data) < 2:
        raise OpenSetError(f"{path}: expected an object of at least two areas, {{category: {{slug, name, "
                           "description}}}}")
    areas = []
    for code in sorted(data):
        entry = data[code]
        fields = [entry.get(key) if isinstance(entry, dict) else None for key in ("slug", "name", "description")]
        if not all(isinstance(value, str) and value.strip() for value in fields):
            raise OpenSetError(f"{path}: area {code!r} needs a non-empty slug, name and description")
        areas.append(Area(code, *(str(value).strip() for value in fields)))
    slugs = [area.slug for area in areas]
    if len(set(slugs)) != len(slugs):
        raise OpenSetError(f"{path}: two areas share a slug ({', '.join(sorted(slugs))})")
    return areas


def in_half(arxiv_id: str, half: int | None) -> bool:
    """Whether the paper is in that half of the set (SHA-1 of the id even: 0, odd: 1; None: every paper)."""
    return half is None or int(hashlib.sha1(arxiv_id.encode()).hexdigest(), 16) % 2 == half


def read_labelled_set(path: Path, areas: Sequence[Area], half: int | None = None) -> list[Row]:
    """The papers of a labelled set (one half, or all with ``half=None``); OpenSetError naming the first bad line."""
    from newsletter.records.papers import Paper

    codes = {area.code for area in areas}
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
            if missing:
                raise OpenSetError(f"{path}:1: missing column(s) {', '.join(missing)}; expected "
                                   f"{','.join(COLUMNS)}")
            lines = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise OpenSetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise OpenSetError(f"{path}: cannot read it as UTF-8 CSV: {error}") from None
    rows, seen = [], set()
    for line, row in lines:
        arxiv_id, primary = row["arxiv_id"].strip(), row["primary"].strip()
        categories = tuple(row["categories"].split())
        if primary not in codes:
            raise OpenSetError(f"{path}:{line}: primary category {primary!r} is not in the topic table "
                               f"({', '.join(sorted(codes))})")
        if not categories or categories[0] != primary:
            raise OpenSetError(f"{path}:{line}: categories must list the primary category {primary!r} first")
        if arxiv_id in seen:
            raise OpenSetError(f"{path}:{line}: paper {arxiv_id} is listed twice")
        seen.add(arxiv_id)
        if in_half(arxiv_id, half):
            paper = Paper(paper_id=arxiv_id, title=row["title"], abstract=row["abstract"])
            rows.append(Row(paper=paper, primary=primary, categories=categories))
    if not rows:
        raise OpenSetError(f"{path}: no papers" + ("" if half is None else f" in half {half}"))
    return rows


def combinations(codes: Sequence[str], size: int = 4, sample: int = 35, seed: int = 0) -> list[tuple[str, ...]]:
    """Every ``size``-combination of the areas, or ``sample`` of them drawn with ``seed`` when there are more."""
    every = list(itertools.combinations(sorted(codes), size))
    if len(every) <= sample:
        return every
    return sorted(random.Random(seed).sample(every, sample))


def _macro(per_topic: Sequence[tuple[float | None, float | None, float | None]], off: float) -> dict[str, float]:
    """Macro F1 over the topics with papers, mean precision and recall over all (no match: 0), off-topic share."""
    f1s = [f1 for _, _, f1 in per_topic if f1 is not None]
    return {
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "precision": sum(p or 0.0 for p, _, _ in per_topic) / len(per_topic),
        "recall": sum(r or 0.0 for _, r, _ in per_topic) / len(per_topic),
        "off_topic_matched": off,
    }


def strict_scores(evaluation: Any) -> dict[str, float]:
    """A ``newsletter.matching.evaluate.Evaluation`` as the figures topics-dev reports."""
    scores = [(s.precision, s.recall, s.f1) for s in evaluation.scores]
    off = evaluation.unlabelled_matched / evaluation.unlabelled if evaluation.unlabelled else 0.0
    return _macro(scores, off)


def lenient_scores(rows: Sequence[Row], configured: Sequence[Area], matches: Any) -> dict[str, float]:
    """Scores where a paper listed in a configured area (primary or cross-list) is a fair answer for its topic."""
    listed = {row.paper.paper_id: set(row.categories) for row in rows}
    code_of = {area.slug: area.code for area in configured}
    matched: dict[str, set[str]] = {area.slug: set() for area in configured}
    answered: dict[str, set[str]] = {pid: set() for pid in listed}
    for match in matches:
        matched[match.topic].add(match.paper_id)
        answered[match.paper_id].add(code_of[match.topic])
    per_topic = []
    for area in configured:
        found = matched[area.slug]
        fair = sum(1 for pid in found if area.code in listed[pid])
        own = [row.paper.paper_id for row in rows if row.primary == area.code]
        recalled = sum(1 for pid in own if answered[pid] & listed[pid])
        precision = fair / len(found) if found else None
        recall = recalled / len(own) if own else None
        f1 = None if recall is None else (2 * precision * recall / (precision + recall)
                                          if precision and recall else 0.0)
        per_topic.append((precision, recall, f1))
    codes = {area.code for area in configured}
    outside = [pid for pid, categories in listed.items() if not categories & codes]
    off = sum(1 for pid in outside if answered[pid]) / len(outside) if outside else 0.0
    return _macro(per_topic, off)


def score_configuration(rows: Sequence[Row], configured: Sequence[Area], matcher: Any) -> dict[str, dict[str, float]]:
    """Strict and lenient scores of ``matcher`` with ``configured`` as the topics (the set is its own background)."""
    from newsletter.config import TopicSettings
    from newsletter.matching.background import score_open_world
    from newsletter.matching.evaluate import LabelledPaper, score_matches
    from newsletter.matching.scoring import decide_matches, learned_similarities

    topics = [TopicSettings(slug=area.slug, name=area.name, description=area.description) for area in configured]
    slug_of = {area.code: area.slug for area in configured}
    papers = [row.paper for row in rows]
    labelled = [LabelledPaper(paper=row.paper, label=slug_of.get(row.primary)) for row in rows]
    rule = matcher.rule  # as newsletter.matching.evaluate.evaluate decides, at the matcher's own settings
    scored, beats = score_open_world(matcher, papers, topics, background=papers)
    learned = learned_similarities(rule, scored)
    if rule.calibrated:
        matches = decide_matches(rule, papers, topics, scored, similarities=learned, floor=rule.floor, beats=beats)
    else:
        matches = decide_matches(rule, papers, topics, scored, similarities=learned, threshold=rule.threshold)
    strict = score_matches(labelled, topics, matches, method=matcher.method,
                           threshold=rule.floor if rule.calibrated else rule.threshold)
    return {"strict": strict_scores(strict), "lenient": lenient_scores(rows, configured, matches)}


def _summary(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    summary = {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}
    summary["worst_macro_f1"] = min(run["macro_f1"] for run in runs)
    summary["worst_off_topic_matched"] = max(run["off_topic_matched"] for run in runs)
    return summary


def open_world_scores(rows: Sequence[Row], areas: Sequence[Area], matcher: Any, *, size: int = 4,
                      sample: int = 35) -> dict[str, Any]:
    """Open (``size`` of N, all or a sample), named and closed shapes, strict and lenient (module docstring).

    ``open``, ``closed`` are the strict figures, with the keys of ``bench/topics.py``'s ``open_world``.
    """
    by_code = {area.code: area for area in areas}
    chosen = combinations(list(by_code), size, sample)
    total = len(list(itertools.combinations(by_code, size)))
    opened = [score_configuration(rows, [by_code[c] for c in codes], matcher) for codes in chosen]
    closed = score_configuration(rows, list(areas), matcher)
    world: dict[str, Any] = {
        "papers": len(rows),
        "open": _summary([run["strict"] for run in opened]),
        "closed": closed["strict"],
        "lenient": {"open": _summary([run["lenient"] for run in opened]), "closed": closed["lenient"]},
        "labels": {"open": f"{size} of {len(areas)} (mean of {len(chosen)}"
                           + (")" if len(chosen) == total else f" sampled of {total})"),
                   "closed": f"all {len(areas)}"},
        "named": {},
    }
    if all(code in by_code for code in HIDDEN_SET_ANALOGUE):
        label = " + ".join(HIDDEN_SET_ANALOGUE)
        world["named"][label] = score_configuration(rows, [by_code[c] for c in HIDDEN_SET_ANALOGUE], matcher)
    return world


def lenient_report(results: Sequence[dict[str, Any]]) -> str:
    """Strict against lenient, per method and background: the open mean, the hidden set's analogue, all areas."""
    lines = ["| method | background | shape | strict macro-F1 | strict off-topic | lenient macro-F1 | "
             "lenient off-topic |", "|---|---|---|---:|---:|---:|---:|"]

    def cells(strict: dict[str, float], lenient: dict[str, float], off: bool) -> str:
        worst = (f" (worst {strict['worst_macro_f1']:.3f})" if "worst_macro_f1" in strict else "")
        lworst = (f" (worst {lenient['worst_macro_f1']:.3f})" if "worst_macro_f1" in lenient else "")
        strict_off = f"{strict['off_topic_matched']:.1%}" if off else "—"
        lenient_off = f"{lenient['off_topic_matched']:.1%}" if off else "—"
        return (f"{strict['macro_f1']:.3f}{worst} | {strict_off} | {lenient['macro_f1']:.3f}{lworst} | "
                f"{lenient_off} |")

    for result in results:
        for background, world in result.get("open_world", {}).items():
            if "lenient" not in world:
                continue
            prefix = f"| {result['method']} | {background} |"
            lines.append(f"{prefix} {world['labels']['open']} | "
                         + cells(world["open"], world["lenient"]["open"], True))
            for label, run in world["named"].items():
                lines.append(f"{prefix} {label} | " + cells(run["strict"], run["lenient"], True))
            lines.append(f"{prefix} {world['labels']['closed']} | "
                         + cells(world["closed"], world["lenient"]["closed"], False))
    return "\n".join(lines)
