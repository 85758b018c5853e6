"""How well the configured matcher sorts a labelled sample: per-topic precision, recall and F1, and macro-F1.

The sample is a CSV file with the columns ``title``, ``abstract`` and ``label`` (the slug of the topic the
paper belongs to, or empty for a paper that belongs to none), and optionally ``categories`` (arXiv
categories separated by spaces or commas, so category rules count as they do on real papers). A paper may
match several topics: each topic is scored on its own (one-vs-rest), so a paper labelled ``agents`` that
also matches ``reasoning`` is a false positive of ``reasoning``.

    precision = correct / matched      recall = correct / labelled      F1 = 2·correct / (matched + labelled)

Macro-F1 is the mean F1 of the topics that have at least one labelled paper (F1 is undefined for the others).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import Settings, TopicSettings
from newsletter.errors import LabelledDataError
from newsletter.matching.base import Matcher
from newsletter.matching.matcher import build_matcher
from newsletter.matching.rules import apply_rules
from newsletter.sources.ingest import IDF_BACKGROUND_PAPERS
from newsletter.sources.records import Paper, TopicMatch
from newsletter.storage.papers import PaperStore

REQUIRED_COLUMNS = ("title", "abstract", "label")


@dataclass(frozen=True)
class LabelledPaper:
    paper: Paper
    label: str | None
    """The topic slug the paper belongs to; None: it belongs to no topic."""


@dataclass(frozen=True)
class TopicScore:
    slug: str
    name: str
    labelled: int
    matched: int
    correct: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.matched if self.matched else None

    @property
    def recall(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def f1(self) -> float | None:
        return 2 * self.correct / (self.matched + self.labelled) if self.labelled else None


@dataclass(frozen=True)
class Evaluation:
    method: str
    threshold: float
    papers: int
    unlabelled: int
    """Papers labelled with no topic."""
    unlabelled_matched: int
    """Of those, papers that matched some topic all the same."""
    scores: tuple[TopicScore, ...]

    @property
    def macro_f1(self) -> float | None:
        values = [s.f1 for s in self.scores if s.f1 is not None]
        return sum(values) / len(values) if values else None

    def as_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "method": self.method,
            "threshold": self.threshold,
            "papers": self.papers,
            "unlabelled": self.unlabelled,
            "unlabelled_matched": self.unlabelled_matched,
            "topics": [
                {
                    "slug": s.slug,
                    "labelled": s.labelled,
                    "matched": s.matched,
                    "correct": s.correct,
                    "precision": rounded(s.precision),
                    "recall": rounded(s.recall),
                    "f1": rounded(s.f1),
                }
                for s in self.scores
            ],
            "macro_f1": rounded(self.macro_f1),
        }


def read_labelled_csv(path: Path, *, topics: Sequence[TopicSettings]) -> list[LabelledPaper]:
    """Read a labelled sample; raise LabelledDataError naming the line of the first problem."""
    shown = str(path)
    slugs = [t.slug for t in topics]
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip().lower() for c in reader.fieldnames or ()]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise LabelledDataError(
                    shown,
                    f"missing column(s) {', '.join(missing)}; expected a header line with title,abstract,label "
                    f"(found: {', '.join(columns) or 'nothing'})",
                    line=1,
                )
            rows = []
            for row in reader:
                rows.append((reader.line_num, {(k or "").strip().lower(): (v or "") for k, v in row.items()}))
    except FileNotFoundError:
        raise LabelledDataError(shown, "file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LabelledDataError(shown, f"cannot read it as UTF-8 CSV: {error}") from None
    labelled: list[LabelledPaper] = []
    for line, row in rows:
        title, abstract = row["title"].strip(), row["abstract"].strip()
        if not title and not abstract:
            raise LabelledDataError(shown, "empty title and abstract", line=line)
        label = row["label"].strip() or None
        if label is not None and label not in slugs:
            raise LabelledDataError(
                shown, f"label {label!r} is not a configured topic; configured topics: {', '.join(slugs)}", line=line
            )
        categories = tuple(c for c in re.split(r"[\s,]+", row.get("categories", "")) if c)
        paper = Paper(paper_id=f"line-{line}", title=title, abstract=abstract, categories=categories,
                      primary_category=categories[0] if categories else None)
        labelled.append(LabelledPaper(paper=paper, label=label))
    if not labelled:
        raise LabelledDataError(shown, "no rows after the header line")
    return labelled


def score_matches(
    labelled: Sequence[LabelledPaper],
    topics: Sequence[TopicSettings],
    matches: Iterable[TopicMatch],
    *,
    method: str,
    threshold: float,
) -> Evaluation:
    """Compare ``matches`` with the labels, per topic."""
    label_of = {item.paper.paper_id: item.label for item in labelled}
    matched: dict[str, set[str]] = {t.slug: set() for t in topics}
    for match in matches:
        matched.setdefault(match.topic, set()).add(match.paper_id)
    scores = []
    for topic in topics:
        expected = {pid for pid, label in label_of.items() if label == topic.slug}
        found = matched[topic.slug]
        scores.append(TopicScore(slug=topic.slug, name=topic.name, labelled=len(expected), matched=len(found),
                                 correct=len(expected & found)))
    any_match = set().union(*matched.values())
    unlabelled = [pid for pid, label in label_of.items() if label is None]
    return Evaluation(
        method=method,
        threshold=threshold,
        papers=len(labelled),
        unlabelled=len(unlabelled),
        unlabelled_matched=sum(1 for pid in unlabelled if pid in any_match),
        scores=tuple(scores),
    )


def evaluate(
    labelled: Sequence[LabelledPaper],
    topics: Sequence[TopicSettings],
    matcher: Matcher,
    *,
    thresholds: Sequence[float] = (),
    background: Sequence[Paper] = (),
) -> list[Evaluation]:
    """Score ``matcher`` at its own threshold, then at each of ``thresholds`` (similarities computed once)."""
    papers = [item.paper for item in labelled]
    similarities = matcher.similarities(papers, topics, background=background)
    results = []
    for threshold in (matcher.threshold, *thresholds):
        matches = apply_rules(papers, topics, similarities, threshold=threshold)
        results.append(score_matches(labelled, topics, matches, method=matcher.method, threshold=threshold))
    return results


def evaluate_sample(
    settings: Settings,
    store: PaperStore,
    path: Path,
    *,
    threshold: float | None = None,
    thresholds: Sequence[float] = (),
) -> list[Evaluation]:
    """`topics evaluate`: score the configured method on a labelled CSV file (``threshold`` overrides its own).

    TF-IDF weighs words against the recent stored papers, as `refresh_matches` does; the sample's papers are
    not stored, nor are their embeddings.
    """
    labelled = read_labelled_csv(path, topics=settings.topics)
    matching = settings.matching
    if threshold is not None:
        if matching.method == "tfidf":
            matching = dataclasses.replace(matching, similarity_threshold=threshold)
        else:
            matching = dataclasses.replace(matching, embedding_threshold=threshold)
    matcher = build_matcher(matching, config_path=str(settings.config_path))
    background = store.papers(limit=IDF_BACKGROUND_PAPERS) if matcher.uses_background else []
    return evaluate(labelled, settings.topics, matcher, thresholds=thresholds, background=background)
