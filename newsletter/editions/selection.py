"""Per-subscriber selection: an edition, a reader's topics in order and what they already received → sections.

Pure (no I/O). The rules:

* sections follow the reader's topic order; topics the edition does not hold are skipped;
* a paper already sent to the reader is left out;
* each paper appears once, in its best section: (paper, topic) pairs are taken best first by
  ``rank`` (the relevance tier, then trending score + match strength; for one paper this prefers its
  strongest topic), and a section takes at most ``max_per_topic`` papers — a paper whose best section is
  full goes to its next best one with room;
* the other topics of the reader that a paper also fits are noted ("also in: …");
* sections left empty are dropped; no sections means no email.

``Selection.key`` identifies the content: two readers with the same key get the same email apart from
their name and links, so it is rendered once (see ``newsletter.rendering.render``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from newsletter.records.editions import Edition, EditionPaper


@dataclass(frozen=True, kw_only=True)
class SelectedPaper:
    paper: EditionPaper
    strength: float
    rank: float
    reasons: tuple[str, ...]
    also_in: tuple[str, ...] = ()
    """Names of the reader's other topics this paper fits, in the reader's order."""


@dataclass(frozen=True, kw_only=True)
class Section:
    slug: str
    name: str
    papers: tuple[SelectedPaper, ...]


@dataclass(frozen=True, kw_only=True)
class Selection:
    edition: Edition
    sections: tuple[Section, ...]
    key: str

    @property
    def is_empty(self) -> bool:
        return not self.sections

    @property
    def paper_ids(self) -> tuple[str, ...]:
        return tuple(p.paper.paper_id for s in self.sections for p in s.papers)

    @property
    def paper_count(self) -> int:
        return sum(len(s.papers) for s in self.sections)


def selection_key(edition_id: int, sections: Sequence[Section]) -> str:
    """Hash of the edition and the ordered sections with their papers and "also in" notes."""
    payload = [edition_id] + [
        [s.slug, [[p.paper.paper_id, list(p.also_in)] for p in s.papers]] for s in sections
    ]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()[:32]


def select(
    edition: Edition,
    topics: Sequence[str],
    *,
    max_per_topic: int,
    already_sent: Collection[str] = frozenset(),
    boosts: Mapping[str, float] | None = None,
) -> Selection:
    """The sections one reader gets from ``edition``; see the module docstring for the rules.

    ``boosts`` adjusts this reader's ranks (``newsletter.editions.preferences``: their feedback clicks).
    """
    extra = boosts or {}
    wanted = [edition.topic_map[slug] for slug in dict.fromkeys(topics) if slug in edition.topic_map]
    pairs: list[tuple[float, int, str, float, tuple[str, ...]]] = []
    fits: dict[str, list[int]] = {}
    for index, topic in enumerate(wanted):
        for entry in topic.entries:
            if entry.paper_id in already_sent:
                continue
            pairs.append((-(entry.rank + extra.get(entry.paper_id, 0.0)), index, entry.paper_id, entry.strength,
                          entry.reasons))
            fits.setdefault(entry.paper_id, []).append(index)
    pairs.sort()
    placed: dict[str, int] = {}
    chosen: list[list[SelectedPaper]] = [[] for _ in wanted]
    for negative_rank, index, paper_id, strength, reasons in pairs:
        if paper_id in placed or len(chosen[index]) >= max_per_topic:
            continue
        placed[paper_id] = index
        others = tuple(wanted[i].name for i in fits[paper_id] if i != index)
        chosen[index].append(
            SelectedPaper(paper=edition.papers[paper_id], strength=strength, rank=-negative_rank, reasons=reasons,
                          also_in=others)
        )
    sections = tuple(
        Section(slug=topic.slug, name=topic.name, papers=tuple(papers))
        for topic, papers in zip(wanted, chosen, strict=True)
        if papers
    )
    return Selection(edition=edition, sections=sections, key=selection_key(edition.id, sections))


@dataclass(frozen=True, kw_only=True)
class VariantGroup:
    """One distinct email content and the subscribers who get it."""

    selection: Selection
    subscriber_ids: tuple[int, ...]


def group_by_variant(
    edition: Edition,
    subscribers: Iterable[tuple[int, Sequence[str]]],
    *,
    max_per_topic: int,
    already_sent: Mapping[int, Collection[str]] | None = None,
    boosts: Mapping[int, Mapping[str, float]] | None = None,
) -> list[VariantGroup]:
    """Select for every ``(subscriber_id, topics)`` and group readers with identical selections.

    Readers whose selection is empty are in no group (they get no email). Groups come in order of their
    first subscriber.
    """
    sent = already_sent or {}
    selections: dict[str, Selection] = {}
    members: dict[str, list[int]] = {}
    seen: dict[tuple[tuple[str, ...], frozenset[str], int], Selection] = {}  # readers alike are selected once
    in_edition = edition.papers.keys()
    for subscriber_id, topics in subscribers:
        history = frozenset(in_edition & set(sent.get(subscriber_id, ())))
        mine = (boosts or {}).get(subscriber_id)
        memo = (tuple(topics), history, subscriber_id if mine else 0)
        selection = seen.get(memo)
        if selection is None:
            selection = seen[memo] = select(edition, topics, max_per_topic=max_per_topic, already_sent=history,
                                            boosts=mine)
        if selection.is_empty:
            continue
        selections.setdefault(selection.key, selection)
        members.setdefault(selection.key, []).append(subscriber_id)
    return [VariantGroup(selection=selections[key], subscriber_ids=tuple(ids)) for key, ids in members.items()]
