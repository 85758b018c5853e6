"""The matching step: stored papers matched to the configured topics, again only when something changed.

Why apart from the matchers: it reads and writes the store (the stored matches, the topics' fingerprint, the
feedback votes and example papers), which the pure matchers never do; `fetch`, building an edition and
`topics suggest` all run it.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.config import Settings
from newsletter.matching.examples import resolve_examples, with_feedback
from newsletter.matching.matcher import build_matcher
from newsletter.records.papers import Paper
from newsletter.storage.embeddings import EmbeddingStore
from newsletter.storage.papers import PaperStore
from subscribers.feedback import FeedbackStore

FINGERPRINT_KEY = "topics_fingerprint"
IDF_BACKGROUND_PAPERS = 2000
"""Recent stored papers that lend their words to the IDF weights when only a few papers are matched."""


def refresh_matches(settings: Settings, store: PaperStore, *, papers: Sequence[Paper] = ()) -> int:
    """Match the given (just stored) papers; every stored paper instead when the topics or the method changed.

    Uses the matcher of ``[matching] method``; the `embedding` one reuses stored paper vectors. Returns how
    many papers were matched.
    """
    cache = EmbeddingStore(store.engine)
    matcher = build_matcher(settings.matching, cache=cache, config_path=str(settings.config_path))
    fingerprint = matcher.fingerprint(settings.topics)
    background: list[Paper] = []
    if store.get_meta(FINGERPRINT_KEY) != fingerprint:
        papers = store.papers()
    elif papers:
        background = store.papers(limit=IDF_BACKGROUND_PAPERS) if matcher.uses_background else []
    else:
        return 0
    votes = FeedbackStore(store.engine).topic_votes(min_readers=settings.feedback.shared_min_readers)
    examples = with_feedback(store, resolve_examples(store, settings.topics), votes)
    matches = matcher.match(papers, settings.topics, background=background, examples=examples)
    store.replace_matches([p.paper_id for p in papers], matches)
    store.set_meta(FINGERPRINT_KEY, fingerprint)
    return len(papers)


def matches_are_current(settings: Settings, store: PaperStore) -> bool:
    """Whether the stored matches were made with today's topics and method (read-only, unlike ``refresh_matches``).

    Builds the configured matcher, so a method whose optional extra is missing fails here as in a fetch.
    """
    cache = EmbeddingStore(store.engine)
    matcher = build_matcher(settings.matching, cache=cache, config_path=str(settings.config_path))
    return store.get_meta(FINGERPRINT_KEY) in (None, matcher.fingerprint(settings.topics)) or not store.count_papers()

