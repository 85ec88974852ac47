"""Screenshot the Predict tab on one photo in headless Chromium (the README's front-door figure).

    python tools/screenshot_predict.py PHOTO OUT.png

Starts the app on a free local port with a temporary data folder, uploads PHOTO in the Predict tab
with the demo checkpoint, waits for the three heatmaps and the regions with the lesion map, and saves
a full-page screenshot. Needs Debian's chromium (/usr/bin/chromium) and Playwright.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melasma.settings import Settings
from melasma.ui.app import serve

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
WAIT_MS = 180_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        demo = serve(Settings(data_dir=Path(data)), host="127.0.0.1", port=port, prevent_thread_lock=True)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("tab", name="Predict").click()
                page.locator("input[type=file][accept='image/*']").first.set_input_files(str(args.photo))
                expect(page.locator("img[src$='/image.png']")).to_have_count(3, timeout=WAIT_MS)  # heatmaps
                expect(page.locator("img[src$='.jpeg']").first).to_be_visible(timeout=WAIT_MS)  # regions slider
                page.wait_for_timeout(3000)  # let the region table finish painting
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            demo.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
