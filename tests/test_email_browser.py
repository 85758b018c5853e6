"""The preview email in real headless Chromium (Debian `chromium` driven by Playwright), phone and desktop wide.

Skipped with the reason when /usr/bin/chromium is missing; fails then under CI, which installs it with
`apt-get install -y chromium`.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from newsletter.usecases.preview import preview
from tests.browser_support import ARGS, ARTIFACTS, CHROMIUM
from tests.email_support import NOW, email_settings, fetch, fix_tokens, stores

pytestmark = pytest.mark.needs("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Requested after ``preview_html``: Playwright's sync API runs an event loop that asyncio.run cannot share."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


def offline_only(route: Route) -> None:
    """Thumbnails live on a CDN: nothing leaves the machine."""
    if route.request.url.startswith(("file:", "data:", "about:")):
        route.continue_()
    else:
        route.abort()


@pytest.fixture(scope="module")
def preview_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fix_tokens(monkeypatch)
        settings = email_settings(folder, email="max_papers_per_topic = 4")
        store, _ = stores(settings)
        fetch(settings, store)
        result = preview(settings, store, out_dir=folder / "out", now=NOW + timedelta(hours=1),
                         topics=["agents", "reasoning", "medical"])
    assert result.html_path is not None
    assert result.papers > 5
    return result.html_path


def check_page(page: Page, width: int) -> None:
    layout = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
    )
    assert layout["scroll"] <= layout["inner"], f"horizontal scrolling at {width}px: {layout}"
    images = page.locator("img")  # cards have no thumbnails; a logo when [email] logo_url is set
    for index in range(images.count()):
        image = images.nth(index)
        assert (image.get_attribute("alt") or "").strip(), f"image {index} has no alt text"
        assert image.get_attribute("width"), f"image {index} has no width"
        assert image.get_attribute("height"), f"image {index} has no height"
        box = image.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width + 0.5, f"image {index} overflows at {width}px"
    unsubscribe = page.get_by_role("link", name="Unsubscribe", exact=True)
    assert unsubscribe.count() == 1
    assert unsubscribe.is_visible()
    box = unsubscribe.bounding_box()
    assert box is not None
    assert box["width"] > 10
    assert box["height"] >= 10
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width
    style = unsubscribe.evaluate(
        "a => { const s = getComputedStyle(a); return {visibility: s.visibility, opacity: s.opacity, "
        "display: s.display, fontSize: parseFloat(s.fontSize), color: s.color}; }"
    )
    assert style["visibility"] == "visible"
    assert float(style["opacity"]) == 1
    assert style["display"] != "none"
    assert style["fontSize"] >= 12
    assert (unsubscribe.get_attribute("href") or "").startswith("https://papers.example.org/unsubscribe/k0.")


@pytest.mark.parametrize("width", [375, 800])
def test_the_email_fits_the_screen_with_alt_texts_and_a_visible_unsubscribe_link(
    preview_html: Path, browser: Browser, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=True)
    try:
        page = context.new_page()
        page.route("**/*", offline_only)
        page.goto(preview_html.as_uri())
        check_page(page, width)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"email-{width}px.png"), full_page=True)
    finally:
        context.close()


def test_dark_mode_changes_the_colours(preview_html: Path, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 900}, color_scheme="dark")
    try:
        page = context.new_page()
        page.route("**/*", offline_only)
        page.goto(preview_html.as_uri())
        background = page.evaluate("() => getComputedStyle(document.querySelector('td.card')).backgroundColor")
        assert background == "rgb(28, 34, 48)"  # cards stay lighter than the page (#0b0e14)
        check_page(page, 375)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "email-375px-dark.png"), full_page=True)
    finally:
        context.close()
