"""Selection → email: Jinja renders it, Premailer inlines its CSS — once per distinct variant.

A variant is rendered with placeholders where the reader's name and links go; ``personalise`` fills them
in per recipient by joining pre-split pieces (microseconds), escaping values for HTML and keeping them raw
for the text part. A placeholder holds a random nonce drawn for each render, so text from a feed can never
forge one.

Size budget: the inlined HTML, with room for the longest personal values (each charged the bytes it can
really take: ``links.personal_allowances``), stays under
``[email] max_html_bytes``. When it would not, whole papers move, lowest-ranked first, behind a "N more
papers on … on the web" link to the edition's archive page; the abstracts of the papers shown are never cut
shorter (a reader gets fewer, complete papers rather than every paper in 150 characters). Each try is a
complete re-render, so markup is never cut.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from newsletter.config import Settings
from newsletter.editions.selection import Selection
from newsletter.errors import TemplateError
from newsletter.rendering.context import (
    email_context,
    placeholder_pattern,
    placeholder_prefix,
    safe_url,
    subject_line,
)
from newsletter.rendering.links import TEXT_ALLOWANCE, Recipient, personal_allowances
from newsletter.rendering.personal import personal_values
from newsletter.rendering.templating import HTML_TEMPLATE, TEXT_TEMPLATE, RenderEnvironment, default_template_dir

# Premailer sizes its shared parse cache from this variable when it is first imported; 128 entries thrash
# (~37 ms per document instead of ~12). `_ensure_premailer_cache` fixes it if premailer was imported first.
PREMAILER_CACHE_SIZE = 4096
os.environ.setdefault("PREMAILER_CACHE_MAXSIZE", str(PREMAILER_CACHE_SIZE))

import premailer  # noqa: E402  (after the cache size is set)
import premailer.cache  # noqa: E402

__all__ = [
    "RenderEnvironment",
    "RenderedVariant",
    "default_template_dir",
    "inline_css",
    "personal_values",
    "placeholder_pattern",
    "render_variant",
    "safe_url",
    "subject_line",
]

log = logging.getLogger(__name__)


def _ensure_premailer_cache() -> None:
    cache = premailer.cache.cache
    if cache.maxsize < PREMAILER_CACHE_SIZE:
        cache._Cache__maxsize = PREMAILER_CACHE_SIZE  # cachetools keeps the limit in a private attribute


_ensure_premailer_cache()


@dataclass
class RenderStats:
    """Counts of the expensive steps, for tests and benchmarks."""

    inline_calls: int = 0
    renders: int = 0


stats = RenderStats()


def inline_css(document: str) -> str:
    """Premailer with the settings email needs: keep ``!important`` and the ignored ``<style>`` block,
    keep classes (media queries use them), keep explicit width/height attributes, no network."""
    stats.inline_calls += 1
    return str(
        premailer.Premailer(
            document,
            strip_important=False,
            remove_classes=False,
            disable_link_rewrites=True,
            allow_network=False,
            disable_validation=True,
            disable_basic_attributes=["width", "height"],
            cssutils_logging_level=logging.CRITICAL,
        ).transform(pretty_print=False)
    )


# --- placeholders and personalisation -------------------------------------------------------------------


def _split(document: str, pattern: re.Pattern[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pieces: list[str] = []
    names: list[str] = []
    position = 0
    for match in pattern.finditer(document):
        pieces.append(document[position : match.start()])
        names.append(match.group("name"))
        position = match.end()
    pieces.append(document[position:])
    return tuple(pieces), tuple(names)


def _join(split: tuple[tuple[str, ...], tuple[str, ...]], values: Mapping[str, str]) -> str:
    pieces, names = split
    out = [pieces[0]]
    for name, piece in zip(names, pieces[1:], strict=True):
        out.append(values[name])
        out.append(piece)
    return "".join(out)


@dataclass(frozen=True)
class RenderedVariant:
    """One rendered and inlined email content, shared by every reader whose selection has this key."""

    key: str
    subject: str
    html: str
    text: str
    paper_ids: tuple[str, ...]
    """The papers shown in the email (not those moved behind a "more on the web" link)."""
    size_bytes: int
    """UTF-8 size of ``html`` with its placeholders."""
    nonce: str = ""
    hidden_paper_ids: tuple[str, ...] = ()

    @cached_property
    def placeholder(self) -> re.Pattern[str]:
        return placeholder_pattern(self.nonce)

    @cached_property
    def _html_split(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return _split(self.html, self.placeholder)

    @cached_property
    def _text_split(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return _split(self.text, self.placeholder)

    def personalise(self, recipient: Recipient) -> tuple[str, str]:
        """(html, text) for one reader: values HTML-escaped in the HTML, raw in the text."""
        values = personal_values(recipient)
        escaped = {name: html.escape(value, quote=True) for name, value in values.items()}
        return _join(self._html_split, escaped), _join(self._text_split, values)


# --- rendering under the size budget --------------------------------------------------------------------


def _sizer(nonce: str, allowances: Mapping[str, int]) -> Callable[[str], int]:
    """Bytes of a document once personalised with values of the largest allowed size: each placeholder is
    replaced by its field's allowance (its own bytes no longer count)."""
    pattern = placeholder_pattern(nonce)
    prefix = placeholder_prefix(nonce)

    def size(document: str) -> int:
        total = len(document.encode("utf-8"))
        if prefix not in document:
            return total
        for match in pattern.finditer(document):
            total += allowances.get(match.group("name"), TEXT_ALLOWANCE) - len(match.group(0))
        return total

    return size


def render_variant(
    selection: Selection,
    *,
    settings: Settings,
    environment: RenderEnvironment,
    nonce: str | None = None,
    model_tldrs: Mapping[str, str] | None = None,
    stored_tldrs: Mapping[str, str] | None = None,
) -> RenderedVariant:
    """Render and inline one variant under the size budget (see the module docstring). ``model_tldrs``: TL;DRs
    by paper id from ``[email.tldr] endpoint`` (``newsletter.usecases.tldr_model``), part of the variant key;
    ``stored_tldrs``: the papers' own TL;DRs as stored (``newsletter.usecases.tldrs``), the same text the
    render would make, so not part of the key."""
    in_selection = set(selection.paper_ids)
    used = {p: t for p, t in (model_tldrs or {}).items() if p in in_selection}
    nonce = nonce or secrets.token_hex(8)
    budget = settings.email.max_html_bytes
    _size = _sizer(nonce, personal_allowances(settings, selection.edition.slug))
    subject = subject_line(selection, settings=settings)
    stats.renders += 1

    def raw_html(abstract_chars: int, shown: frozenset[str] | None) -> str:
        context = email_context(selection, settings=settings, subject=subject, nonce=nonce,
                                abstract_chars=abstract_chars, shown=shown, model_tldrs=used,
                                full_cards=settings.email.full_cards_per_section, stored_tldrs=stored_tldrs)
        return environment.render(HTML_TEMPLATE, context)

    def finish(abstract_chars: int, shown: frozenset[str] | None, inlined: str) -> RenderedVariant:
        context = email_context(selection, settings=settings, subject=subject, nonce=nonce,
                                abstract_chars=abstract_chars, shown=shown, model_tldrs=used,
                                full_cards=settings.email.full_cards_per_section, stored_tldrs=stored_tldrs)
        text = environment.render(TEXT_TEMPLATE, context)
        visible = selection.paper_ids if shown is None else tuple(p for p in selection.paper_ids if p in shown)
        hidden = tuple(p for p in selection.paper_ids if p not in visible)
        return RenderedVariant(key=variant_key(selection, environment, used), subject=subject, html=inlined, text=text,
                               paper_ids=visible, size_bytes=len(inlined.encode("utf-8")), nonce=nonce,
                               hidden_paper_ids=hidden)

    limit = settings.email.abstract_chars
    raw = raw_html(limit, None)
    inlined = inline_css(raw)
    if _size(inlined) <= budget:
        return finish(limit, None, inlined)
    ratio = _size(inlined) / max(1, _size(raw))

    def try_inline(abstract_chars: int, shown: frozenset[str] | None, candidate: str) -> str | None:
        nonlocal ratio
        if _size(candidate) * ratio > budget:
            return None  # predicted too large: skip the expensive inlining
        result = inline_css(candidate)
        ratio = max(ratio, _size(result) / max(1, _size(candidate)))
        return result if _size(result) <= budget else None

    level = limit
    ranked = _ranked_ids(selection)
    keep = _largest_fitting(lambda k: _size(raw_html(level, frozenset(ranked[:k]))) * ratio <= budget,
                            len(ranked) - 1)
    while keep >= 0:
        shown = frozenset(ranked[:keep])
        result = try_inline(level, shown, raw_html(level, shown))
        if result is not None:
            log.info("variant %s: %d of %d papers moved to the web to fit %d bytes", selection.key,
                     len(ranked) - keep, len(ranked), budget)
            return finish(level, shown, result)
        keep = keep - max(1, keep // 20) if keep else -1
    raise TemplateError(
        f"the email is larger than [email] max_html_bytes = {budget} even with no papers; "
        "make the templates smaller or raise the limit"
    )


def _ranked_ids(selection: Selection) -> list[str]:
    """Papers best first across sections (rank, then the reader's section order)."""
    ordered = [(-p.rank, index, p.paper.paper_id) for index, s in enumerate(selection.sections) for p in s.papers]
    return [paper_id for _, _, paper_id in sorted(ordered)]


def _largest_fitting(fits: Callable[[int], bool], upper: int) -> int:
    """Largest k in [0, upper] with fits(k), assuming fits is monotone (True up to some k); 0 if none."""
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def variant_key(selection: Selection, environment: RenderEnvironment,
                model_tldrs: Mapping[str, str] | None = None) -> str:
    """Selection content (edition, sections, papers, notes) + template and settings fingerprint (+ the
    endpoint's TL;DRs, when there are any: another answer is another email)."""
    extra = "".join(f"\n{p}\t{t}" for p, t in sorted((model_tldrs or {}).items()))
    return hashlib.sha256(f"{selection.key}:{environment.fingerprint}{extra}".encode()).hexdigest()[:32]
