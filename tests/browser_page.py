"""A headless Debian-chromium page for the browser tests: ``with chromium_page(viewport) as page``.

At the end it saves a screenshot (when given a path: the page as the test left it, for a failure)
and prints the page's console errors (pytest shows them when the test failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextmanager
def chromium_page(width: int, height: int, *, screenshot: Path | None = None, full_page: bool = True) -> Iterator[Page]:
    """A page of `width` x `height` CSS pixels in Debian's chromium (a missing browser fails the test)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    messages: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda m: messages.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
        try:
            yield page
        finally:
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=full_page)
            print("browser console errors:\n" + ("\n".join(messages) or "(none)"))
            browser.close()
