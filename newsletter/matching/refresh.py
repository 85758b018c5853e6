"""The matching step: stored papers matched to the configured topics, again only when something changed.

Why apart from the matchers: it reads and writes the store (the stored matches, the topics' fingerprint, the
feedback votes and example papers), which the pure matchers never do; `fetch`, building an edition and
`topics suggest` all run it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from newsletter.config import Settings
from newsletter.matching.chunked import match_in_chunks
from newsletter.matching.examples import resolve_examples, with_feedback
from newsletter.matching.matcher import TfidfMatcher, build_matcher
from newsletter.matching.pending import end_pending, pending_since
from newsletter.records.papers import Paper
from newsletter.storage.embeddings import EmbeddingStore
from newsletter.storage.papers import PaperStore
from subscribers.feedback import FeedbackStore

FINGERPRINT_KEY = "topics_fingerprint"
IDF_BACKGROUND_PAPERS = 2000
"""Recent stored papers that lend their words to the IDF weights when only a few papers are matched."""
MATCH_CHUNK = 5000
"""Papers read from the store and matched at a time (`tfidf`): the matches are those of the whole batch."""


def refresh_matches(
    settings: Settings, store: PaperStore, *, papers: Sequence[Paper] = (), paper_ids: Sequence[str] = ()
) -> int:
    """Match the given (just stored) papers; every stored paper instead when the topics or the method changed.

    ``paper_ids`` names stored papers without holding them: they are read a chunk at a time. Papers a stopped
    fetch stored but did not match (``pending.begin_storing``) are matched too. Uses the matcher of ``[matching]
    method``; the `embedding` one reuses stored paper vectors. Returns how many papers were matched.
    """
    cache = EmbeddingStore(store.engine)
    matcher = build_matcher(settings.matching, cache=cache, config_path=str(settings.config_path))
    fingerprint = matcher.fingerprint(settings.topics)
    pending = pending_since(store)
    given = {p.paper_id: p for p in papers}
    ids = list(dict.fromkeys([*given, *paper_ids]))
    if pending is not None:
        listed = set(ids)
        ids += [i for i in store.paper_ids(updated_since=pending) if i not in listed]
    background: list[Paper] = []
    if store.get_meta(FINGERPRINT_KEY) != fingerprint:
        ids, given = store.paper_ids(), {}
    elif ids:
        background = store.papers(limit=IDF_BACKGROUND_PAPERS) if matcher.uses_background else []
    if not ids:
        if pending is not None:
            end_pending(store)
        return 0
    votes = FeedbackStore(store.engine).topic_votes(min_readers=settings.feedback.shared_min_readers)
    examples = with_feedback(store, resolve_examples(store, settings.topics), votes)

    def load(chunk: Sequence[str], read: Callable[[Sequence[str]], dict[str, Paper]]) -> Mapping[str, Paper]:
        found = {i: given[i] for i in chunk if i in given}
        missing = [i for i in chunk if i not in found]
        return {**found, **read(missing)} if missing else found

    if isinstance(matcher, TfidfMatcher):
        count = match_in_chunks(matcher, (ids[i : i + MATCH_CHUNK] for i in range(0, len(ids), MATCH_CHUNK)),
                                lambda chunk: load(chunk, store.get_for_matching), settings.topics,
                                write=store.replace_matches, background=background, examples=examples)
    else:  # the embedding method matches the batch at once (its vectors are stored; its memory is not bounded)
        found = load(ids, store.get_many)
        batch = [found[i] for i in ids if i in found]
        store.replace_matches(ids, matcher.match(batch, settings.topics, background=background, examples=examples))
        count = len(batch)
    store.set_meta(FINGERPRINT_KEY, fingerprint)
    if pending is not None:
        end_pending(store)
    return count


def matches_are_current(settings: Settings, store: PaperStore) -> bool:
    """Whether the stored matches were made with today's topics and method (read-only, unlike ``refresh_matches``).

    Builds the configured matcher, so a method whose optional extra is missing fails here as in a fetch.
    """
    cache = EmbeddingStore(store.engine)
    matcher = build_matcher(settings.matching, cache=cache, config_path=str(settings.config_path))
    return store.get_meta(FINGERPRINT_KEY) in (None, matcher.fingerprint(settings.topics)) or not store.count_papers()

