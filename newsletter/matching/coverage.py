"""Warnings for topics that match almost nothing, with what to do about it.

Why: a topic that claims no paper fails silently; readers of that topic get empty emails and the operator
never learns why. With description-only topics and the old TF-IDF threshold, 101 of 105 papers of a normal
fetch matched nothing and nothing said so. `fetch` and `status` now say which topic is starving and how to
feed it: example papers, a keyword, or the embedding method.

Pure: counts in, sentences out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from newsletter.config import MatchingSettings, TopicSettings
from newsletter.records.papers import Paper

MIN_PAPERS = 20
"""Below this many stored papers, shares are too noisy to warn about."""
MIN_SHARE = 0.01
"""A topic claiming no paper, or less than this share of the stored papers, is starving."""
MAX_UNMATCHED_SHARE = 0.5


def coverage_warnings(
    topics: Sequence[TopicSettings],
    matching: MatchingSettings,
    *,
    counts: Mapping[str, int],
    papers: int,
    unmatched: int,
    missing: Mapping[str, Sequence[str]] | None = None,
    embedding_installed: bool = True,
) -> list[str]:
    """One sentence per problem: a topic that matches almost nothing, most papers unmatched, unknown examples."""
    warnings: list[str] = []
    for slug, references in (missing or {}).items():
        shown = ", ".join(references[:3]) + (" …" if len(references) > 3 else "")
        warnings.append(f"topic {slug!r}: {len(references)} example paper(s) not in the store yet ({shown}); "
                        "they count once fetched")
    if papers < MIN_PAPERS:
        return warnings
    hint = "add `examples = [\"ARXIV_ID\", …]` (a few papers that belong to it), a keyword it should match"
    if matching.method == "tfidf":
        extra = "" if embedding_installed else " (install the embeddings extra first)"
        hint += f", or set [matching] method = \"embedding\"{extra}"
    for topic in topics:
        count = counts.get(topic.slug, 0)
        if count == 0 or count < MIN_SHARE * papers:
            warnings.append(f"topic {topic.slug!r} matches almost nothing: {count} of {papers} stored papers; {hint}")
    if unmatched > MAX_UNMATCHED_SHARE * papers:
        warnings.append(f"{unmatched} of {papers} stored papers match no topic (`newsletter papers --unmatched`, "
                        "`newsletter topics suggest`)")
    return warnings


class CoverageStore(Protocol):
    """What ``store_warnings`` needs of ``newsletter.storage.papers.PaperStore``."""

    def match_counts(self) -> dict[str, int]: ...

    def count_papers(self) -> int: ...

    def count_unmatched(self) -> int: ...

    def get_many(self, paper_ids: Sequence[str]) -> dict[str, Paper]: ...

    def by_titles(self, titles: Sequence[str]) -> dict[str, Paper]: ...


def store_warnings(topics: Sequence[TopicSettings], matching: MatchingSettings, store: CoverageStore) -> list[str]:
    """``coverage_warnings`` over what the store holds now (what `fetch` and `status` print)."""
    from newsletter.matching.examples import missing_examples
    from newsletter.matching.extra import missing_extra

    return coverage_warnings(topics, matching, counts=store.match_counts(), papers=store.count_papers(),
                             unmatched=store.count_unmatched(), missing=missing_examples(store, topics),
                             embedding_installed=not missing_extra())
