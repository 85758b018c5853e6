"""An edition as one chat message: a short header, the top papers, a link to the whole edition on the web.

Each service has its own size limit (Apprise's ``body_maxlen`` and ``title_maxlen`` of its plugin: Rocket.Chat
1,000 characters, Discord 2,000, Mattermost 4,000, ntfy 7,800, ...). The message is built to fit it: a
paper's TL;DR is shortened first, then papers are left out and counted in the "more on the web" line; the
link to the edition is always kept. It never fails for being too long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.records.editions import Edition, EditionPaper
from newsletter.records.summaries import split_sentences
from newsletter.rendering.context import display_title, trend_phrase
from newsletter.rendering.tldr import card_tldr

_MARKDOWN = re.compile(r"([\\`*_\[\]<>|#])")


def one_line_tldr(paper: EditionPaper) -> str:
    """The paper in one line: the first sentence of its TL;DR as the email's card shows it (Hugging Face's AI
    summary when there is one, else the abstract's contribution sentence; ``rendering.tldr.card_tldr``)."""
    tldr = card_tldr(paper)
    sentences = split_sentences(tldr)
    return sentences[0] if sentences else tldr


@dataclass(frozen=True)
class ChatMessage:
    title: str
    body: str
    papers: int
    """How many papers the body lists (the others are in the "more on the web" line)."""


def channel_papers(edition: Edition, topics: tuple[str, ...]) -> list[EditionPaper]:
    """The edition's papers in these topics (all topics when empty), best rank first, each once."""
    best: dict[str, float] = {}
    for topic in edition.topics:
        if topics and topic.slug not in topics:
            continue
        for entry in topic.entries:
            best[entry.paper_id] = max(entry.rank, best.get(entry.paper_id, entry.rank))
    ordered = sorted(best, key=lambda paper_id: (-best[paper_id], paper_id))
    return [edition.papers[paper_id] for paper_id in ordered if paper_id in edition.papers]


def _escape(text: str) -> str:
    """Feed text is a stranger's: no markup of it reaches the chat (Markdown and HTML characters escaped)."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def _entry(number: int, paper: EditionPaper, tldr_chars: int) -> str:
    title = _escape(_cut(display_title(paper), 200))
    link = paper.abs_url or paper.hf_url or paper.pdf_url
    head = f"{number}. [{title}]({link})" if link else f"{number}. {title}"
    trend = trend_phrase(paper)
    if trend:
        head += f" — 🔥 {trend}"
    tldr = _escape(_cut(one_line_tldr(paper), tldr_chars)) if tldr_chars > 0 else ""
    return f"{head}\n   {tldr}" if tldr else head


def chat_message(*, name: str, edition: Edition, papers: list[EditionPaper], count: int, edition_url: str,
                 body_limit: int, title_limit: int) -> ChatMessage:
    """The message for these papers (best first), within ``body_limit`` characters (title included when the
    service has no title, ``title_limit`` 0)."""
    title = f"{name}: {edition.frequency} edition of {edition.date.isoformat()}"
    if title_limit > 0:
        title = _cut(title, title_limit)
        header = ""
    else:
        header = f"**{_escape(title)}**\n\n"
        title = ""
    listed = papers[:count]
    for shown in range(len(listed), -1, -1):
        for tldr_chars in (300, 160, 80, 0):
            more = len(papers) - shown
            footer = (f"{more} more on the web: {edition_url}" if more else f"The whole edition: {edition_url}")
            entries = [_entry(i + 1, paper, tldr_chars) for i, paper in enumerate(listed[:shown])]
            body = header + "".join(e + "\n" for e in entries) + ("\n" if entries else "") + footer
            if len(body) <= body_limit:
                return ChatMessage(title=title, body=body, papers=shown)
    return ChatMessage(title=title, body=_cut(edition_url, body_limit), papers=0)
