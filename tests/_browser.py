"""Headless Chromium for the HTML report's tests, driven by Playwright.

The browser is Debian's ``chromium`` package (.ci/run installs it); Playwright only drives
it and never downloads a browser of its own. The flags keep Chromium off the network: the
report is a ``file://`` page and must need nothing else. ``page_errors`` collects console
errors and uncaught exceptions, so a test can assert there were none.

``PROMPTLIB_CHROMIUM`` names another Chromium executable. Without a browser or Playwright,
the tests that need them are skipped with the reason; everything else still runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def chromium() -> str | None:
    """The Chromium executable to use, if there is one."""
    named = os.environ.get("PROMPTLIB_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    if executable is None:
        pytest.skip(
            "no Chromium: install Debian's chromium package (.ci/run does) or set "
            "PROMPTLIB_CHROMIUM to its executable"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield instance
        finally:
            instance.close()


class Opened:
    """A page opened on a report file, with the errors it raised."""

    def __init__(self, browser: Any, path: Path, width: int = 1400) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": 1000})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.page.close()
