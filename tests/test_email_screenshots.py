"""The largest edition in real Chromium at 320, 375 and 1200 px, in light, dark and images-off: PNGs a person
can open in test-artifacts/email-design/, no horizontal overflow, text contrast of at least 4.5:1 (WCAG AA)
computed from the CSS the browser applied, and link buttons at least 44 px tall.

Skipped with the reason when /usr/bin/chromium is missing; fails then under CI.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Route, sync_playwright

from newsletter.editions.build import build_edition
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from tests.browser_support import ARGS, ARTIFACTS, CHROMIUM
from tests.design_support import offline_edition, offline_settings_in, personalised, render, topic_selection
from tests.email_support import NOW, fix_tokens

pytestmark = [pytest.mark.slow, pytest.mark.needs("chromium")]
SHOTS = ARTIFACTS / "email-design"
LOGO_URL = "https://cdn.example.org/logo.png"
# a 1×1 dark PNG: the logo when images load
LOGO_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

CONTRAST_JS = """
() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = el => { for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const ratio = (fg, bg) => {
    const a = lum(fg), b = lum(bg); return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  const shown = el => { for (let e = el; e; e = e.parentElement) { const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) return false; }
    const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const worst = []; let checked = 0;
  const check = (el, text) => { const fg = parse(getComputedStyle(el).color), bg = background(el);
    const value = ratio(fg, bg); checked++;
    if (value < 4.5) worst.push({text: text.slice(0, 50), color: getComputedStyle(el).color,
                                 background: `rgb(${bg.r}, ${bg.g}, ${bg.b})`, ratio: value}); };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) { const node = walker.currentNode; const text = node.textContent.trim();
    if (text && shown(node.parentElement)) check(node.parentElement, text); }
  for (const img of document.images) if (shown(img)) check(img, 'alt: ' + img.alt);
  return {checked, worst, scroll: document.documentElement.scrollWidth, inner: window.innerWidth};
}
"""


@pytest.fixture(scope="module")
def largest_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fix_tokens(monkeypatch)
        settings = offline_settings_in(folder, max_papers_per_topic=10, abstract_chars=600, logo_url=LOGO_URL)
        edition = offline_edition(settings)
        selection = topic_selection(settings, edition, 6)
        variant = render(settings, selection)
        html_part, _ = personalised(settings, edition, variant)
    assert len(variant.paper_ids) >= 40  # the largest email: the rest of its 60 papers are past the size budget
    path = folder / "largest.html"
    path.write_text(html_part, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser(largest_html: Path, weekly_with_note_html: dict[str, Path]) -> Iterator[Browser]:
    """Launched after the emails are built: building one runs an event loop, which Playwright's would block."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


def route_for(images: bool):  # type: ignore[no-untyped-def]
    def handle(route: Route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "about:")):
            route.continue_()
        elif images and url == LOGO_URL:
            route.fulfill(status=200, content_type="image/png", body=LOGO_PNG)
        else:
            route.abort()  # nothing leaves the machine; with images off, the logo never loads
    return handle


@pytest.mark.parametrize("width", [320, 375, 1200])
@pytest.mark.parametrize("mode", ["light", "dark", "images-off"])
def test_the_largest_edition_reads_well_everywhere(largest_html: Path, browser: Browser, width: int,
                                                   mode: str) -> None:
    context = browser.new_context(viewport={"width": width, "height": 1000},
                                  color_scheme="dark" if mode == "dark" else "light")
    try:
        page = context.new_page()
        page.route("**/*", route_for(images=mode != "images-off"))
        page.goto(largest_html.as_uri())
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"largest-{width}px-{mode}.png"), full_page=True)
        result: dict[str, Any] = page.evaluate(CONTRAST_JS)
        assert result["scroll"] <= result["inner"], f"horizontal overflow at {width}px: {result['scroll']}"
        assert result["checked"] > 300
        assert not result["worst"], result["worst"][:5]
        assert page.locator("[data-paper]").count() >= 57  # the largest email: 57 or more of its 60 papers...
        assert page.locator("a.b").count() == page.locator("td.card").count() == 12  # ...2 full cards a section
        if width == 375 and mode != "images-off":  # compact rows past the full cards: a few phone screens
            assert page.evaluate("document.documentElement.scrollHeight") <= 9_000
        heights = page.evaluate("() => Array.from(document.querySelectorAll('a.b, a.q, .toc a, .foot a'), "
                                "a => a.getBoundingClientRect().height)")
        assert min(heights) >= 44
        logo = page.locator("img.logo")
        assert logo.get_attribute("alt") == "Trending Papers (offline example)"
        styles = logo.evaluate("img => { const s = getComputedStyle(img); return {bg: s.backgroundColor, "
                               "w: img.getBoundingClientRect().width}; }")
        assert styles["bg"] == "rgba(0, 0, 0, 0)"  # images off: the alt text on the card, not a grey box
        assert 0 < styles["w"] <= 200 or mode == "images-off"
        if mode == "dark":
            card, page_bg = page.evaluate("() => [getComputedStyle(document.querySelector('td.card')).backgroundColor,"
                                          " getComputedStyle(document.body).backgroundColor]")
            assert card != page_bg  # cards keep their own colour in dark mode
    finally:
        context.close()


STRIP_STYLE = re.compile(r"<style\b.*?</style>", re.DOTALL | re.IGNORECASE)

LAYOUT_JS = """
() => {
  const column = document.querySelector('td.card').getBoundingClientRect();
  const outside = [];
  for (const el of document.querySelectorAll('td.wrap *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const s = getComputedStyle(el);
    // a cell's collapsed border is painted half outside its box
    const collapsed = el.tagName === 'TD' && getComputedStyle(el.closest('table')).borderCollapse === 'collapse';
    const left = r.left - (collapsed ? parseFloat(s.borderLeftWidth) / 2 : 0);
    const right = r.right + (collapsed ? parseFloat(s.borderRightWidth) / 2 : 0);
    if (left < column.left - 0.5 || right > column.right + 0.5)
      outside.push({tag: el.tagName, cls: el.className, left: left - column.left, right: right - column.right});
  }
  const textLeft = el => { const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) { if (walker.currentNode.textContent.trim()) { const range = document.createRange();
      range.selectNodeContents(walker.currentNode); return range.getClientRects()[0].left; } } return null; };
  const wrapped = Array.from(document.querySelectorAll('td.mast a'),
                             a => ({text: a.textContent, lines: a.getClientRects().length})).filter(a => a.lines > 1);
  return {outside, greeting: textLeft(document.querySelector('td.hi')),
          note: textLeft(document.querySelector('td.note')),
          card: textLeft(document.querySelector('td.card h3')), top: textLeft(document.querySelector('td.top')),
          wrapped, height: document.documentElement.scrollHeight};
}
"""


@pytest.fixture(scope="module")
def weekly_with_note_html(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The weekly edition (its masthead's date range is the longest) of all topics with an editor's note,
    as sent and with every <style> block stripped (as some clients do)."""
    folder = tmp_path_factory.mktemp("layout")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fix_tokens(monkeypatch)
        settings = offline_settings_in(folder, max_papers_per_topic=10, abstract_chars=600)
        offline_edition(settings)
        engine = open_database(settings.newsletter.database_url)
        weekly = build_edition(settings, PaperStore(engine), EditionStore(engine), frequency="weekly",
                               now=NOW + timedelta(hours=1))
        # the longest date range a masthead shows, across a year's end
        weekly = dataclasses.replace(weekly, date=date(2026, 1, 4), window_start=datetime(2025, 12, 28, tzinfo=UTC),
                                     note="A note from the editor: the reading group meets on Thursday "
                                                  "to discuss the top pick of this week.")
        variant = render(settings, topic_selection(settings, weekly, 6))
        html_part, _ = personalised(settings, weekly, variant)
    paths = {"styled": folder / "weekly.html", "stripped": folder / "weekly-stripped.html"}
    paths["styled"].write_text(html_part, encoding="utf-8")
    paths["stripped"].write_text(STRIP_STYLE.sub("", html_part), encoding="utf-8")
    return paths


@pytest.mark.parametrize("width", [375, 1200])
@pytest.mark.parametrize("mode", ["light", "dark", "style-stripped"])
def test_everything_stays_in_the_column_and_lines_up(weekly_with_note_html: dict[str, Path], browser: Browser,
                                                      width: int, mode: str) -> None:
    """No element outside the column (the top block's border once sat 2 px outside it), the editor's note and
    the greeting start where the cards' text starts (the note once ran edge to edge, the greeting hung 20 px
    left without <style>), and no link in the masthead wraps ("View in browser" once did at 1200 px)."""
    context = browser.new_context(viewport={"width": width, "height": 1000},
                                  color_scheme="dark" if mode == "dark" else "light")
    try:
        page = context.new_page()
        page.route("**/*", route_for(images=False))
        page.goto(weekly_with_note_html["stripped" if mode == "style-stripped" else "styled"].as_uri())
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"weekly-note-{width}px-{mode}.png"), full_page=True)
        result: dict[str, Any] = page.evaluate(LAYOUT_JS)
        assert not result["outside"], result["outside"][:5]
        assert result["note"] is not None
        assert abs(result["note"] - result["card"]) <= 1, result
        assert abs(result["greeting"] - result["card"]) <= 1, result
        assert not result["wrapped"], result["wrapped"]
    finally:
        context.close()
