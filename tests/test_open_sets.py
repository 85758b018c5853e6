"""bench/open_sets.py and bench/topics.py --dev-topics: another labelled open-world set with its own topic table.

The scores are driven through the real TF-IDF matcher on real papers of ``bench/data/topics-other``; strict scores
must agree with ``newsletter.matching.evaluate`` (the scoring of topics-dev), lenient ones are checked by hand on a
few matches.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from newsletter.config import MatchingSettings, TopicSettings
from newsletter.matching.evaluate import LabelledPaper, evaluate
from newsletter.matching.matcher import build_matcher
from newsletter.records.papers import TopicMatch

ROOT = Path(__file__).resolve().parent.parent
OTHER = ROOT / "bench" / "data" / "topics-other"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


open_sets = _load("open_sets")


def test_the_shipped_set_reads_whole_with_its_ten_areas() -> None:
    areas = open_sets.read_topic_table(OTHER / "topics.json")
    rows = open_sets.read_labelled_set(OTHER / "papers.csv", areas)
    assert [a.code for a in areas] == sorted(["cs.AI", "cs.CL", "cs.CR", "cs.CV", "cs.IR", "cs.LG", "cs.NI",
                                              "cs.RO", "cs.SD", "cs.SE"])
    assert len(rows) == 1006
    assert {r.primary for r in rows} == {a.code for a in areas}
    assert all(r.paper.categories == () for r in rows)  # hidden from the matcher
    halves = [open_sets.read_labelled_set(OTHER / "papers.csv", areas, half) for half in (0, 1)]
    assert sorted(r.paper.paper_id for h in halves for r in h) == sorted(r.paper.paper_id for r in rows)


def test_bad_tables_and_sets_are_named_with_the_line(tmp_path: Path) -> None:
    table = tmp_path / "topics.json"
    table.write_text(json.dumps({"cs.RO": {"slug": "robotics", "name": "Robotics"},
                                 "cs.SD": {"slug": "audio", "name": "Audio", "description": "Sound."}}))
    with pytest.raises(open_sets.OpenSetError, match=r"'cs\.RO' needs a non-empty slug, name and description"):
        open_sets.read_topic_table(table)
    table.write_text(json.dumps({"cs.RO": {"slug": "r", "name": "Robotics", "description": "Robots."},
                                 "cs.SD": {"slug": "a", "name": "Audio", "description": "Sound."}}))
    areas = open_sets.read_topic_table(table)
    papers = tmp_path / "papers.csv"
    with papers.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(open_sets.COLUMNS)
        writer.writerow(["2507.00001", "A robot", "It walks.", "cs.RO", "cs.RO"])
        writer.writerow(["2507.00002", "A network", "It routes.", "cs.NI cs.RO", "cs.NI"])
    with pytest.raises(open_sets.OpenSetError, match=r"papers.csv:3: primary category 'cs.NI' is not in the"):
        open_sets.read_labelled_set(papers, areas)


def test_ten_areas_sample_35_combinations_the_same_way_and_seven_give_all_35() -> None:
    ten = [f"cs.{c}" for c in "ABCDEFGHIJ"]
    drawn = open_sets.combinations(ten)
    assert len(drawn) == 35
    assert len(set(drawn)) == 35
    assert drawn == open_sets.combinations(list(reversed(ten)))
    assert len(open_sets.combinations(ten[:7])) == 35


def test_lenient_counts_a_cross_listed_configured_area_as_a_fair_answer() -> None:
    areas = [open_sets.Area("cs.RO", "robotics", "Robotics", "Robots."),
             open_sets.Area("cs.SD", "audio", "Audio", "Sound.")]
    from newsletter.records.papers import Paper

    def row(pid: str, *categories: str) -> object:
        return open_sets.Row(paper=Paper(paper_id=pid, title=pid, abstract=""), primary=categories[0],
                             categories=categories)

    rows = [row("r1", "cs.RO"), row("r2", "cs.RO"), row("s1", "cs.SD"), row("x1", "cs.CV", "cs.RO"),
            row("x2", "cs.CV"), row("x3", "cs.LG")]

    def match(pid: str, topic: str) -> TopicMatch:
        return TopicMatch(paper_id=pid, topic=topic, strength=1.0, similarity=1.0)

    matches = [match("r1", "robotics"), match("x1", "robotics"), match("x2", "robotics"), match("s1", "robotics")]
    scores = open_sets.lenient_scores(rows, areas, matches)
    # robotics: 4 matched, 2 list cs.RO (r1, x1); 1 of its 2 papers found. audio: nothing matched, s1 not found.
    assert scores["precision"] == pytest.approx((2 / 4 + 0) / 2)
    assert scores["recall"] == pytest.approx((1 / 2 + 0) / 2)
    assert scores["macro_f1"] == pytest.approx((2 * 0.5 * 0.5 / 1.0 + 0.0) / 2)
    assert scores["off_topic_matched"] == pytest.approx(1 / 2)  # x2 matched; x3 not; x1 is listed in cs.RO


def test_strict_scores_are_the_evaluation_of_topics_dev() -> None:
    areas = open_sets.read_topic_table(OTHER / "topics.json")
    rows = open_sets.read_labelled_set(OTHER / "papers.csv", areas, half=0)
    configured = [a for a in areas if a.code in open_sets.HIDDEN_SET_ANALOGUE]
    matcher = build_matcher(MatchingSettings(method="tfidf"))
    scores = open_sets.score_configuration(rows, configured, matcher)
    topics = [TopicSettings(slug=a.slug, name=a.name, description=a.description) for a in configured]
    slug = {a.code: a.slug for a in configured}
    labelled = [LabelledPaper(paper=r.paper, label=slug.get(r.primary)) for r in rows]
    expected = evaluate(labelled, topics, matcher, background=[r.paper for r in rows])[0]
    assert scores["strict"]["macro_f1"] == pytest.approx(expected.macro_f1 or 0.0)
    assert scores["strict"]["off_topic_matched"] == pytest.approx(expected.unlabelled_matched / expected.unlabelled)


def test_the_bench_refuses_a_set_its_table_does_not_cover_before_measuring(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = _load("topics")
    table = tmp_path / "topics.json"
    table.write_text(json.dumps({"cs.CV": {"slug": "vision", "name": "Vision", "description": "Images."},
                                 "cs.CL": {"slug": "language", "name": "Language", "description": "Text."}}))
    code = topics.main(["--dev-set", str(OTHER / "papers.csv"), "--dev-topics", str(table), "--dev-half", "all"])
    assert code == 2
    assert "is not in the topic table (cs.CL, cs.CV)" in capsys.readouterr().err
