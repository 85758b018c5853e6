"""The inbox preview: a subject that leads with the reader's own papers, and a preheader that says something else.

Why: a phone shows about 40 characters of a subject and one line of preview. A subject that opens with a
count and topic names ("60 new in Efficient training, LLM agents and 4 more: …") spends them on what the
reader already knows, and a preheader that repeats the same title wastes the second line. The lead paper is
the top of the reader's first section as the edition's ranking gives it, so a one-topic reader's subject
names a paper of that topic; weekly editions say so; the preheader is the lead paper's TL;DR, never its title.
"""

from __future__ import annotations

from newsletter.editions.selection import SelectedPaper, Selection
from newsletter.records.summaries import fit_sentence, split_sentences
from newsletter.records.text import shorten

LEAD_CHARS = 70
"""The titles of the subject's lead stay within this many characters (a phone shows about 40 to 60)."""
PREHEADER_CHARS = 140
WEEKLY_PREFIX = "This week: "


def short_title(title: str) -> str:
    """The paper's own name when its title gives one before a colon ("Flash-GMM" of "Flash-GMM: A Memory-
    Efficient Kernel …"), else the title, at most ``LEAD_CHARS``."""
    name, colon, _ = title.partition(": ")
    if colon and 3 <= len(name) <= 40:
        return name
    return shorten(title, LEAD_CHARS)


def lead_papers(selection: Selection, count: int = 2) -> list[SelectedPaper]:
    """The first ``count`` distinct papers of the reader's sections, first section first, in ranked order."""
    seen: dict[str, SelectedPaper] = {}
    for section in selection.sections:
        for paper in section.papers:
            seen.setdefault(paper.paper.paper_id, paper)
            if len(seen) == count:
                return list(seen.values())
    return list(seen.values())


def lead_phrase(titles: list[str], total: int) -> str:
    """"MiniMax Sparse Attention, Flash-GMM and 58 more": one or two titles, as many as fit the lead."""
    if not titles:
        return ""
    shown = [short_title(titles[0])]
    second = short_title(titles[1]) if len(titles) > 1 else ""
    if second and "," not in second and len(shown[0]) + len(second) + 2 <= LEAD_CHARS:
        shown.append(second)
    rest = total - len(shown)
    if rest <= 0:
        return " and ".join(shown)
    return f"{', '.join(shown)} and {rest:,} more"


def weekly_prefix(frequency: str) -> str:
    return WEEKLY_PREFIX if frequency == "weekly" else ""


def preheader_text(tldr: str, title: str, subject: str, fallback: str) -> str:
    """The lead paper's TL;DR, first sentence, without the paper's name when it opens with it (the subject
    just said it: "Enables efficient processing of …"); the fallback when it would repeat the subject or is
    empty."""
    sentences = split_sentences(tldr)
    teaser = sentences[0] if sentences else ""
    for name in (title, short_title(title)):
        if name and teaser.lower().startswith(name.lower() + " "):
            rest = teaser[len(name):].lstrip()
            teaser = rest[:1].upper() + rest[1:]
            break
    teaser = fit_sentence(teaser, PREHEADER_CHARS) if teaser else ""
    if not teaser or teaser.lower() in subject.lower() or subject.lower() in teaser.lower():
        return fallback
    return teaser
