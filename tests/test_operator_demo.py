"""`newsletter demo` shows the product: non-zero trending scores on the old bundled feeds, each email as a
file:// link that opens in a real browser, and `demo --serve` keeping the pages up until Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import sync_playwright

from newsletter.cli.main import cli
from tests.support import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def test_demo_prints_trending_scores_and_file_links_that_open(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--folder", str(tmp_path / "demo")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scores = [float(m.group(1)) for m in re.finditer(r"^ +(\d+\.\d\d)  \S", result.output, flags=re.MULTILINE)]
    assert max(scores, default=0.0) > 0.0, result.output
    links = re.findall(r"^  (\S+@example\.org): (file://\S+\.html)$", result.output, flags=re.MULTILINE)
    assert len(links) == 5, result.output
    assert "Maildir/new/" not in result.output  # the links replace the Maildir paths
    assert "UTC ([trending] as_of)" in result.output  # printed as text, not read as rich markup
    address, url = links[0]
    assert address.replace("@", "-at-") in url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else route.abort())
        page.goto(url)
        text = page.inner_text("body")
        browser.close()
    assert "Trending Papers (offline example)" in text
    assert "Unsubscribe" in text or "unsubscribe" in text


@pytest.mark.slow
def test_demo_serve_keeps_the_archive_up_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "newsletter", "demo", "--folder", str(tmp_path / "d"),
                                "--serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        page = ""
        while not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/archive", timeout=2) as response:
                    page = response.read().decode()
            except OSError:
                assert process.poll() is None, process.communicate()[0].decode()
                assert time.monotonic() < deadline, "the demo's pages never came up"
                time.sleep(0.5)
        assert "daily-" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert f"archive http://127.0.0.1:{port}/archive" in output
