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
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import Settings, TopicSettings
from newsletter.errors import LabelledDataError
from newsletter.matching.background import score_open_world
from newsletter.matching.embeddings import EmbeddingMatcher
from newsletter.matching.evidence import TopicExamples
from newsletter.matching.examples import resolve_examples
from newsletter.matching.matcher import Matcher, build_matcher
from newsletter.matching.refresh import IDF_BACKGROUND_PAPERS
from newsletter.matching.rules import paper_text
from newsletter.matching.scoring import decide_matches, learned_similarities
from newsletter.records.papers import Paper, TopicMatch
from newsletter.storage.embeddings import TextVectorCache
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
    decision: str = "threshold"
    """"calibrated": ``threshold`` is the rule's absolute floor; "threshold": the per-topic similarity threshold."""
    confusions: tuple[tuple[str, str, int, int], ...] = ()
    """(label, matched topic, papers, papers labelled so): papers of one topic that went to another instead."""

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
            "decision": self.decision,
            "confusions": [
                {"label": label, "matched": other, "papers": count, "share": round(count / total, 4)}
                for label, other, count, total in self.confusions
            ],
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
    decision: str = "threshold",
) -> Evaluation:
    """Compare ``matches`` with the labels, per topic, and count the confusions (most frequent first)."""
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
    confusions = Counter(
        (label, slug)
        for pid, label in label_of.items()
        if label is not None and pid not in matched.get(label, set())
        for slug, found in matched.items()
        if pid in found
    )
    totals = Counter(label for label in label_of.values() if label is not None)
    ranked = sorted(confusions.items(), key=lambda item: (-item[1] / totals[item[0][0]], -item[1], item[0]))
    return Evaluation(
        method=method,
        threshold=threshold,
        papers=len(labelled),
        unlabelled=len(unlabelled),
        unlabelled_matched=sum(1 for pid in unlabelled if pid in any_match),
        scores=tuple(scores),
        decision=decision,
        confusions=tuple((label, other, count, totals[label]) for (label, other), count in ranked),
    )


def evaluate(
    labelled: Sequence[LabelledPaper],
    topics: Sequence[TopicSettings],
    matcher: Matcher,
    *,
    thresholds: Sequence[float] = (),
    background: Sequence[Paper] = (),
    examples: TopicExamples | None = None,
) -> list[Evaluation]:
    """Score ``matcher`` at its own settings, then at each of ``thresholds`` (similarities computed once).

    With the calibrated rule, ``thresholds`` are absolute floors; with the threshold rule, thresholds.
    """
    papers = [item.paper for item in labelled]
    rule = matcher.rule
    scored, beats = score_open_world(matcher, papers, topics, background=background, examples=examples)
    learned = learned_similarities(rule, scored)
    decision = "calibrated" if rule.calibrated else "threshold"
    own = rule.floor if rule.calibrated else rule.threshold
    results = []
    for value in (own, *thresholds):
        if rule.calibrated:
            matches = decide_matches(rule, papers, topics, scored, similarities=learned, floor=value, beats=beats)
        else:
            matches = decide_matches(rule, papers, topics, scored, similarities=learned, threshold=value)
        results.append(score_matches(labelled, topics, matches, method=matcher.method, threshold=value,
                                     decision=decision))
    return results


def evaluate_sample(
    settings: Settings,
    store: PaperStore,
    path: Path,
    *,
    threshold: float | None = None,
    thresholds: Sequence[float] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[Evaluation]:
    """`topics evaluate`: score the configured method on a labelled CSV file (``threshold`` overrides its own).

    Each topic is calibrated against the recent stored papers, as `refresh_matches` does; the sample's papers
    are not stored, but their vectors are, by text hash (``TextVectorCache``), so a second run embeds nothing.
    ``progress(done, total)`` is called as papers are embedded.
    """
    labelled = read_labelled_csv(path, topics=settings.topics)
    matching = settings.matching
    if threshold is not None:
        calibrated, tfidf = matching.decision == "calibrated", matching.method == "tfidf"
        if calibrated and tfidf:
            matching = dataclasses.replace(matching, tfidf_floor=threshold)
        elif calibrated:
            matching = dataclasses.replace(matching, embedding_floor=threshold)
        elif tfidf:
            matching = dataclasses.replace(matching, similarity_threshold=threshold)
        else:
            matching = dataclasses.replace(matching, embedding_threshold=threshold)
    cache = TextVectorCache(store.engine, [paper_text(item.paper) for item in labelled],
                            [item.paper.paper_id for item in labelled])
    matcher = build_matcher(matching, cache=cache, config_path=str(settings.config_path))
    if progress is not None and isinstance(matcher, EmbeddingMatcher):
        matcher.progress = progress
    background = store.papers(limit=IDF_BACKGROUND_PAPERS) if matcher.uses_background else []
    examples = resolve_examples(store, settings.topics)
    return evaluate(labelled, settings.topics, matcher, thresholds=thresholds, background=background,
                    examples=examples)
