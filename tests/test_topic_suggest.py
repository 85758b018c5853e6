"""`newsletter topics suggest`: clusters of unmatched papers, named by their distinctive terms, as TOML."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.config import settings_from_mapping
from newsletter.matching.suggest import class_tfidf_terms, suggest_topics, to_toml
from tests.conftest import ROOT
from tests.topic_support import labelled_archive_sample


def test_class_tfidf_prefers_terms_of_one_group_over_common_ones() -> None:
    groups = [
        ["Superconducting nanowires at low temperature.", "Superconducting gaps in nanowires."],
        ["Language agents at low temperature.", "Language agents that call tools."],
    ]
    terms = class_tfidf_terms(groups, top=3, background=["Sampling temperature of language models."])
    assert terms[0][0] in {"superconducting", "nanowires"}
    assert terms[1][0] in {"agents", "language agents"}
    assert not {"temperature", "low temperature"} & {*terms[0], *terms[1]}  # in every class: not distinctive


def test_suggestions_group_the_condensed_matter_papers_and_paste_as_valid_config() -> None:
    sample = labelled_archive_sample()
    labels = {item.paper.paper_id: item.label for item in sample}
    suggestions = suggest_topics([item.paper for item in sample], taken_slugs=["cs"])
    assert suggestions.papers == 77
    assert len(suggestions.topics) == 6  # √(77/2) clusters
    assert sum(t.size for t in suggestions.topics) + suggestions.left_out == 77
    best = max(suggestions.topics, key=lambda t: Counter(labels[i] for i in t.paper_ids)["cond-mat"])
    assert Counter(labels[i] for i in best.paper_ids)["cond-mat"] >= 0.8 * best.size
    assert "quantum" in best.terms
    text = to_toml(suggestions)
    assert text.startswith("# 77 papers match no topic; 6 suggested topics.\n")
    assert f"# {best.size} papers, e.g.:\n#   - {best.examples[0]}\n" in text
    raw = tomllib.loads(text)
    raw["newsletter"] = {"from_address": "a@example.org", "base_url": "https://example.org"}
    raw["sources"] = []
    settings = settings_from_mapping(raw, config_path=Path("config.toml"))  # every key valid, slugs unique
    assert [t.slug for t in settings.topics] == [t.slug for t in suggestions.topics]
    assert settings.topics[0].keywords == suggestions.topics[0].terms[:3]


def test_suggest_command_prints_toml_for_the_unmatched_papers(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "offline.toml").read_text(encoding="utf-8")
    config = tmp_path / "offline.toml"
    text = text.replace('url = "feeds/', f'url = "{ROOT / "examples" / "feeds"}/')
    # the threshold rule leaves papers unmatched (the calibrated one gives nearly every paper its best topic)
    config.write_text(text.replace("[email]", '[matching]\ndecision = "threshold"\n\n[email]', 1), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "fetch"], catch_exceptions=False).exit_code == 0
    unmatched = runner.invoke(cli, ["--config", str(config), "papers", "--unmatched", "--json"])
    count = len(json.loads(unmatched.output)["papers"])
    result = runner.invoke(cli, ["--config", str(config), "topics", "suggest", "--since", "2000-01-01",
                                 "--clusters", "3", "--min-size", "2", "--examples", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"# {count} papers first seen since 2000-01-01 match no topic; ")
    suggested = tomllib.loads(result.output)["topics"]
    assert 1 <= len(suggested) <= 3
    assert all(set(t) == {"slug", "name", "description", "keywords"} for t in suggested)
    assert result.output.count("#   - ") == len(suggested)  # one example title each
