"""Helpers shared by several test modules (moved from test_email_browser.py, which uses them too)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")


ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


ARTIFACTS = ROOT / "test-artifacts"
