"""Keep readers' topics in step with ``[[topics]]`` when an operator renames, adds or removes one.

A subscriber's topics are stored as slugs. Without this module, renaming a slug in the config silently
dropped the topic from its readers' emails, and a reader who chose "every topic" (the default) never got a
topic added later, because "every topic" was stored as the list of topics at sign-up. Now:

* **Renames**: ``[[topics]] formerly = ["old-slug"]`` moves every reader of ``old-slug`` to the topic.
* **Additions**: the slugs configured last time are kept in the ``meta`` table. A reader whose topics
  covered every one of them had "every topic", and gets each topic added since.
* **Removals**: readers of a slug that no longer exists (and that no ``formerly`` claims) are reported, so
  ``fetch`` and ``status`` can warn; their other topics go on as before.

``reconcile_topics`` runs whenever a command opens the database with a config (cheap when nothing
changed: one ``meta`` read and one subscriber scan), so a rename takes effect at the next command.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.storage.papers import PaperStore
from subscribers.store import SubscriberStore

KNOWN_TOPICS_KEY = "configured_topics"


@dataclass(frozen=True, kw_only=True)
class TopicChanges:
    """What ``reconcile_topics`` did, and what it could not fix."""

    renamed: dict[str, int] = field(default_factory=dict)
    """``"old -> new"`` to the number of readers moved."""
    added: dict[str, int] = field(default_factory=dict)
    """New topic slug to the number of "every topic" readers who got it."""
    orphaned: dict[str, int] = field(default_factory=dict)
    """Slug no topic has any more to the number of active or pending readers who still chose it."""

    def warnings(self) -> list[str]:
        """One line per slug readers chose that is gone (how the CLI and ``status`` warn)."""
        return [f"{count} reader{'s' if count != 1 else ''} chose topic {slug!r}, which is no longer in [[topics]]; "
                f"if it was renamed, add formerly = [{slug!r}] to the new topic" for slug, count in
                sorted(self.orphaned.items())]


def _recorded(papers: PaperStore) -> dict[str, list[str]] | None:
    """The slugs (and old slugs) configured when readers were last brought in step, if ever."""
    value = papers.get_meta(KNOWN_TOPICS_KEY)
    return dict(json.loads(value)) if value else None


def reconcile_topics(settings: Settings, engine: Engine, *, now: datetime, orphans: bool = False) -> TopicChanges:
    """Apply renames and additions to the stored readers, record the topics, report orphaned slugs.

    Readers are scanned only when the configured slugs differ from those recorded last time, or when
    ``orphans`` asks for the report (``fetch``, ``status``): other commands pay one ``meta`` read.
    """
    configured = [t.slug for t in settings.topics]
    renames = {old: t.slug for t in settings.topics for old in t.formerly}
    papers = PaperStore(engine)
    recorded = _recorded(papers)
    now_recorded = {"slugs": configured, "formerly": sorted(renames)}
    if recorded == now_recorded and not orphans:
        return TopicChanges()
    known = recorded["slugs"] if recorded is not None else None
    previous = [renames.get(slug, slug) for slug in known] if known is not None else None
    added = [slug for slug in configured if previous is not None and slug not in previous]
    had_all = {s for s in (previous or []) if s in configured}
    store = SubscriberStore(engine)
    changes: dict[int, list[str]] = {}
    renamed: Counter[str] = Counter()
    gained: Counter[str] = Counter()
    orphaned: Counter[str] = Counter()
    for subscriber in store.list_all():
        topics = list(dict.fromkeys(renames.get(slug, slug) for slug in subscriber.topics))
        for slug in subscriber.topics:
            if slug in renames:
                renamed[f"{slug} -> {renames[slug]}"] += 1
        if added and had_all and had_all <= set(topics):
            for slug in added:
                if slug not in topics:
                    topics.append(slug)
                    gained[slug] += 1
        if topics != list(subscriber.topics):
            changes[subscriber.id] = topics
        if subscriber.status in ("active", "pending"):
            orphaned.update(slug for slug in topics if slug not in configured)
    if changes:
        store.replace_topics(changes, now=now)
    if recorded != now_recorded:
        papers.set_meta(KNOWN_TOPICS_KEY, json.dumps(now_recorded))
    return TopicChanges(renamed=dict(renamed), added=dict(gained), orphaned=dict(orphaned))
