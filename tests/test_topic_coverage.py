"""`fetch` and `status` warn about topics that match almost nothing and say how to fix it; few-shot examples."""

from __future__ import annotations

import json
from pathlib import Path

from newsletter.config import MatchingSettings
from newsletter.matching.coverage import coverage_warnings
from tests.conftest import FIXTURES, write_config
from tests.support import run
from tests.topic_support import ARCHIVE_TOPICS, ARCHIVE_TOPICS_TOML

API_SOURCES = [(path.stem, "arxiv-api", str(path)) for path in sorted((FIXTURES / "arxiv_api").glob("*.xml"))]
MARINE = '\n[[topics]]\nslug = "marine"\nname = "Marine biology"\ndescription = "Coral reefs, fish and plankton."\n'


def test_a_topic_the_threshold_rule_starves_is_named_by_fetch_with_its_fixes(tmp_path: Path) -> None:
    """Under the old threshold rule a description-only topic can match nothing; fetch names it and says what to
    do. (Before TF-IDF matched word stems the archive topic 'astro-ph' starved here too; now only a topic about
    none of the papers does.)"""
    config = write_config(tmp_path, API_SOURCES, topics=ARCHIVE_TOPICS_TOML + MARINE,
                          extra='[matching]\ndecision = "threshold"')
    code, output = run(config, "fetch", "--json")
    assert code == 0, output
    warnings = json.loads(output)["topic_warnings"]
    starving = [w for w in warnings if "matches almost nothing" in w]
    assert any(w.startswith("topic 'marine' matches almost nothing: 0 of 77 stored papers; add `examples = [")
               for w in starving)
    assert all('or set [matching] method = "embedding"' in w for w in starving)


def test_most_papers_unmatched_is_a_warning_too() -> None:
    warnings = coverage_warnings(ARCHIVE_TOPICS, MatchingSettings(method="embedding"),
                                 counts={t.slug: 10 for t in ARCHIVE_TOPICS}, papers=105, unmatched=101)
    assert warnings == ["101 of 105 stored papers match no topic (`newsletter papers --unmatched`, "
                        "`newsletter topics suggest`)"]
    assert coverage_warnings(ARCHIVE_TOPICS, MatchingSettings(), counts={}, papers=5, unmatched=5) == []


def test_the_calibrated_default_matches_every_archive_and_warns_only_about_an_unrelated_topic(tmp_path: Path) -> None:
    config = write_config(tmp_path, API_SOURCES, topics=ARCHIVE_TOPICS_TOML + MARINE)
    code, output = run(config, "fetch")
    assert code == 0, output
    assert "warning topic 'marine' matches almost nothing" in " ".join(output.split())
    code, output = run(config, "status", "--json")
    assert code == 0, output
    warnings = json.loads(output)["topic_warnings"]
    assert [w.split(" matches")[0] for w in warnings] == ["topic 'marine'"]  # the 7 archives all get papers
    code, output = run(config, "status")
    assert "topic 'marine' matches almost nothing" in " ".join(output.split())


def test_example_papers_pull_their_neighbours_into_a_topic(tmp_path: Path) -> None:
    base = write_config(tmp_path, API_SOURCES, topics=ARCHIVE_TOPICS_TOML)
    code, output = run(base, "fetch")
    assert code == 0, output
    code, output = run(base, "papers", "--topic", "math", "--json")
    before = {p["id"] for p in json.loads(output)["papers"]}
    # two labelled-maths papers of the fixtures, by arXiv id and by exact title, plus one not yet fetched
    code, output = run(base, "papers", "--json")
    papers = {p["id"]: p for p in json.loads(output)["papers"]}
    maths = [pid for pid, p in papers.items() if (p["primary_category"] or "").startswith("math")]
    assert len(maths) == 2
    title = papers[maths[1]]["title"]
    toml = ARCHIVE_TOPICS_TOML.replace(
        'name = "Mathematics"', f'name = "Mathematics"\nexamples = ["{maths[0]}", "{title}", "2999.00001"]')
    config = write_config(tmp_path, API_SOURCES, topics=toml)
    code, output = run(config, "fetch", "--json")
    assert code == 0, output
    warnings = json.loads(output)["topic_warnings"]
    assert "topic 'math': 1 example paper(s) not in the store yet (2999.00001); they count once fetched" in warnings
    code, output = run(config, "papers", "--topic", "math", "--json")
    after = json.loads(output)["papers"]
    assert set(maths) <= {p["id"] for p in after}
    assert {p["id"] for p in after} != before
    reasons = [r for p in after if p["id"] == maths[0] for t in p["topics"] if t["slug"] == "math"
               for r in t["reasons"]]
    assert any(r.startswith("like the example paper ‘") for r in reasons)
