"""A reader's own ranking model must never hurt (issue 24, item 3): what it learns from their votes is held
back where the votes do not support it, through ``reader_boosts``, the function `send` runs, on real
abstracts' TF-IDF vectors.

The cases are the ways the first model (a logistic regression per reader, standardised decision values)
made rankings worse on bench/reader_ranking.py: "less" votes alone lifted the matcher's off-topic
intruders, contradictory votes still reordered a section at full strength, and a few votes could move a
paper three standard deviations of the section's order.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from newsletter.editions.preferences import reader_boosts
from newsletter.editions.reader_model import CAP, PREFERENCE_WEIGHT
from newsletter.records.editions import Edition, EditionEntry, EditionPaper, EditionTopic
from newsletter.records.papers import Paper

MOMENT = datetime(2026, 3, 2, 6, tzinfo=UTC)
SECTION = {  # the agents section as the matcher ranked it: four agents papers, then an off-topic intruder
    "a1": "Language model agents that plan multi-step web navigation tasks and call external tools.",
    "a2": "Tool-using language model agents: planning, memory and reflection for long-horizon tasks.",
    "a3": "Multi-agent debate between language model agents improves planning on web tasks.",
    "a4": "Benchmarking language model agents that call tools and browse the web to complete tasks.",
    "x1": "Sharp bounds for the number of lattice points in convex bodies, with a proof by Fourier analysis.",
}


def _edition(texts: dict[str, str]) -> Edition:
    entries = tuple(EditionEntry(paper_id=pid, strength=0.5, rank=2.4 - i / 10) for i, pid in enumerate(texts))
    return Edition(id=1, frequency="daily", date=MOMENT.date(), slug="daily-test", window_start=MOMENT,
                   cutoff=MOMENT, created=MOMENT,
                   papers={p: EditionPaper(paper_id=p, title=t, abstract=t) for p, t in texts.items()},
                   topics=(EditionTopic(slug="agents", name="Agents", entries=entries),))


def _paper(pid: str, text: str) -> Paper:
    return Paper(paper_id=pid, title=text, abstract=text)


def _order(edition: Edition, boosts: dict[str, float]) -> list[str]:
    ranks = {e.paper_id: e.rank + boosts.get(e.paper_id, 0.0) for e in edition.topics[0].entries}
    return sorted(ranks, key=lambda pid: (-ranks[pid], pid))


def test_less_votes_alone_push_down_papers_like_them_and_never_lift_an_off_topic_intruder() -> None:
    edition = _edition(SECTION)
    voted = {"v1": _paper("v1", "Language model agents plan web navigation and call tools to finish tasks."),
             "v2": _paper("v2", "Agents built on language models call tools and plan multi-step web tasks.")}
    boosts = reader_boosts(edition, {7: {"v1": -1, "v2": -1}}, voted, {7: ["agents"]})[7]
    assert boosts["x1"] <= 0.0  # the old mirror model lifted whatever was least like the "less" papers
    assert all(value <= 0.0 for value in boosts.values())
    assert min(boosts.values()) < 0.0  # but the vote did something: papers like v1 and v2 went down
    assert _order(edition, boosts)[-1] == "x1"  # the intruder stays below every agents paper


def test_a_readers_preference_moves_a_paper_a_bounded_distance() -> None:
    edition = _edition(SECTION)
    liked = [SECTION[f"a{i}"].replace("agents", name) for i in (1, 2, 3, 4)
             for name in ("agent systems", "assistants")]
    disliked = ["Counting lattice points in convex bodies and polytopes with Fourier analysis.",
                "Fourier analysis bounds the number of integer points in dilated convex polytopes."]
    voted = {f"m{i}": _paper(f"m{i}", text) for i, text in enumerate(liked)}
    voted |= {f"l{i}": _paper(f"l{i}", text) for i, text in enumerate(disliked)}
    votes = {pid: 1 if pid.startswith("m") else -1 for pid in voted}  # ten votes: the model counts fully
    boosts = reader_boosts(edition, {7: votes}, voted, {7: ["agents"]})[7]
    spread = float(np.std([e.rank for e in edition.topics[0].entries]))
    assert max(abs(value) for value in boosts.values()) <= PREFERENCE_WEIGHT * CAP * spread + 1e-4  # old: 3 ×
    assert boosts["x1"] < 0.0 < max(boosts.values())  # consistent votes are acted on


def test_contradictory_votes_fall_back_to_the_shared_order() -> None:
    edition = _edition(SECTION)
    pairs = [("Language model agents plan web navigation and call tools to finish tasks.",
              "Language model agents plan web navigation and call tools to complete tasks."),
             ("Multi-agent debate of language models for planning and tool use.",
              "Multi-agent debate of language models for tool use and planning.")]
    voted = {}
    votes = {}
    for i, (liked, disliked) in enumerate(pairs):  # "more" and "less" on near-identical papers
        voted[f"m{i}"], voted[f"l{i}"] = _paper(f"m{i}", liked), _paper(f"l{i}", disliked)
        votes[f"m{i}"], votes[f"l{i}"] = 1, -1
    boosts = reader_boosts(edition, {7: votes}, voted, {7: ["agents"]})[7]
    assert set(boosts.values()) == {0.0}  # the old model reordered the section at full strength
    assert _order(edition, boosts) == list(SECTION)
