"""Per-subscriber selection, pure: sections in the reader's order, each paper once, history respected."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from newsletter.editions.selection import Section, group_by_variant, select
from newsletter.records.editions import Edition, EditionEntry, EditionPaper, EditionTopic

WHEN = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)


def edition(topics: dict[str, list[tuple[str, float]]], *, edition_id: int = 7) -> Edition:
    """An edition whose topics hold (paper id, strength) entries; every paper scores 1.0."""
    ids = sorted({pid for entries in topics.values() for pid, _ in entries})
    papers = {pid: EditionPaper(paper_id=pid, title=f"Paper {pid}", score=1.0) for pid in ids}
    built = tuple(
        EditionTopic(
            slug=slug,
            name=slug.title(),
            entries=tuple(
                sorted(
                    (EditionEntry(paper_id=pid, strength=s, rank=1.0 + s, reasons=(f"why {pid}",))
                     for pid, s in entries),
                    key=lambda e: (-e.rank, e.paper_id),
                )
            ),
        )
        for slug, entries in topics.items()
    )
    return Edition(id=edition_id, frequency="daily", date=date(2026, 4, 27), slug="daily-2026-04-27",
                   window_start=WHEN, cutoff=WHEN, created=WHEN, papers=papers, topics=built)


EDITION = edition({
    "agents": [("a1", 0.9), ("a2", 0.5), ("shared", 0.4), ("a3", 0.2)],
    "reasoning": [("r1", 0.8), ("shared", 0.7), ("r2", 0.3)],
    "vision": [("v1", 0.6)],
})


def layout(sections: Sequence[Section]) -> list[tuple[str, list[str]]]:
    return [(s.slug, [p.paper.paper_id for p in s.papers]) for s in sections]


def test_sections_follow_the_readers_order_and_each_paper_appears_once_in_its_best_section() -> None:
    chosen = select(EDITION, ["agents", "reasoning"], max_per_topic=10)
    assert layout(chosen.sections) == [("agents", ["a1", "a2", "a3"]), ("reasoning", ["r1", "shared", "r2"])]
    shared = chosen.sections[1].papers[1]
    assert shared.also_in == ("Agents",)
    assert shared.reasons == ("why shared",)
    assert len(chosen.paper_ids) == len(set(chosen.paper_ids)) == 6
    reverse = select(EDITION, ["reasoning", "agents"], max_per_topic=10)
    assert layout(reverse.sections) == [("reasoning", ["r1", "shared", "r2"]), ("agents", ["a1", "a2", "a3"])]


def test_a_full_section_passes_a_paper_on_to_its_next_best_topic() -> None:
    chosen = select(EDITION, ["agents", "reasoning"], max_per_topic=1)
    assert layout(chosen.sections) == [("agents", ["a1"]), ("reasoning", ["r1"])]
    crowded = edition({"agents": [("x", 0.9), ("y", 0.8)], "reasoning": [("x", 0.5), ("y", 0.6)]})
    chosen = select(crowded, ["agents", "reasoning"], max_per_topic=1)
    assert layout(chosen.sections) == [("agents", ["x"]), ("reasoning", ["y"])]
    assert chosen.sections[1].papers[0].also_in == ("Agents",)


def test_papers_already_sent_are_left_out_and_empty_sections_dropped() -> None:
    chosen = select(EDITION, ["vision", "agents", "reasoning"], max_per_topic=10, already_sent={"v1", "a1", "r1"})
    assert layout(chosen.sections) == [("agents", ["a2", "a3"]), ("reasoning", ["shared", "r2"])]
    nothing = select(EDITION, ["vision", "unknown-topic"], max_per_topic=10, already_sent={"v1"})
    assert nothing.is_empty
    assert nothing.paper_ids == ()


def test_variant_keys_depend_on_content_not_on_topic_sets() -> None:
    only_vision = select(EDITION, ["vision"], max_per_topic=10)
    vision_and_gone = select(EDITION, ["vision", "unknown-topic"], max_per_topic=10)
    assert only_vision.key == vision_and_gone.key  # same outcome, one render
    with_history = select(EDITION, ["vision", "agents"], max_per_topic=10, already_sent={"a1"})
    without = select(EDITION, ["vision", "agents"], max_per_topic=10)
    assert with_history.key != without.key  # same topics, different history
    # the "also in" note is part of the content
    alone = select(EDITION, ["reasoning"], max_per_topic=10, already_sent={"r1", "r2"})
    noted = select(EDITION, ["reasoning", "agents"], max_per_topic=10, already_sent={"r1", "r2", "a1", "a2", "a3"})
    assert layout(alone.sections) == layout(noted.sections) == [("reasoning", ["shared"])]
    assert alone.key != noted.key
    other_edition = select(edition({"vision": [("v1", 0.6)]}, edition_id=8), ["vision"], max_per_topic=10)
    assert other_edition.key != only_vision.key


def test_grouping_readers_by_variant() -> None:
    readers = [
        (1, ["agents"]),
        (2, ["vision"]),
        (3, ["agents"]),
        (4, ["vision", "unknown-topic"]),
        (5, ["agents"]),
        (6, ["vision"]),
    ]
    groups = group_by_variant(EDITION, readers, max_per_topic=10, already_sent={5: {"a1"}, 6: {"v1"}})
    assert [(g.subscriber_ids, g.selection.paper_ids) for g in groups] == [
        ((1, 3), ("a1", "a2", "shared", "a3")),
        ((2, 4), ("v1",)),
        ((5,), ("a2", "shared", "a3")),
    ]
