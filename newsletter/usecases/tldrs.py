"""Each paper's card TL;DR, made once and stored with the paper (``storage.tldrs``).

Why: every process that renders an edition (``send``, ``serve``'s jobs, a preview, a worker) used to summarise
every paper again; a TL;DR depends only on the paper's text, so it is stored with the hash of that text
(``rendering.tldr.source_hash``). A stored TL;DR whose hash still matches is used as it is; a paper that has
none, or whose abstract or AI summary changed, is summarised and stored (replacing the old one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.engine import Engine

from newsletter.records.editions import EditionPaper
from newsletter.rendering.tldr import card_tldr, source_hash
from newsletter.storage.tldrs import TldrStore

log = logging.getLogger(__name__)


def stored_tldrs(engine: Engine, papers: Iterable[EditionPaper], *, save: bool = True) -> dict[str, str]:
    """``{paper_id: TL;DR}`` of ``papers``: read where stored and current, else made now and (with ``save``)
    stored; ``save=False`` for a caller that writes nothing (``send --dry-run``)."""
    wanted = {p.paper_id: p for p in papers}
    if not wanted:
        return {}
    store = TldrStore(engine)
    found = store.load(list(wanted))
    result: dict[str, str] = {}
    made: dict[str, tuple[str, str]] = {}
    for paper_id, paper in wanted.items():
        key = source_hash(paper)
        stored = found.get(paper_id)
        if stored is not None and stored[0] == key:
            result[paper_id] = stored[1]
            continue
        tldr = card_tldr(paper)
        result[paper_id] = tldr
        made[paper_id] = (key, tldr)
    if save:
        store.save(made)
    log.info("tldrs: %d stored, %d made now", len(wanted) - len(made), len(made))
    return result
