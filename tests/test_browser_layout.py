"""A laptop screen (1366 x 768) shows what is being scored, in a real browser (Playwright + Debian
chromium): the whole rating photo and "Show region outlines" beside the form without scrolling; Predict's
latency table shows its ms column; the adjudication tables have headers even when empty. Writes two
screenshots (rating screen at 1366 x 768, Predict at 390 x 844) into MELASMA_SCREENSHOTS, if set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from annotation.ingest import ingest
from annotation.store import RatingStore
from browser_page import chromium_page
from live_app import live_app
from melasma.data.synthetic import generate
from melasma.settings import Settings

pytestmark = pytest.mark.browser
expect.set_options(timeout=60_000)  # a loaded 2-core machine: events can take seconds

LAPTOP = (1366, 768)
PHONE = (390, 844)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(*LAPTOP, screenshot=tmp_path / "last_page.png", full_page=False) as page:
        yield page


def shot(page: Page, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("MELASMA_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def inside_viewport(page: Page, selector: str) -> None:
    box = page.locator(selector).first.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP[1], (selector, box)


def test_laptop_and_phone_layout(page: Page, tmp_path: Path) -> None:
    generate(tmp_path / "clinic", n=1, size=256, seed=3)
    photo = next((tmp_path / "clinic" / "images").glob("*.jpg"))
    settings = Settings(data_dir=tmp_path / "data")
    ingest(RatingStore.for_settings(settings), settings.photos_dir, [photo], patient_id="P-1")
    with live_app(tmp_path / "data") as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Rate", exact=True).click()
        page.get_by_label("Rater", exact=True).click()
        page.get_by_role("option", name="rater1").click()
        expect(page.locator("#annotate-photo img")).to_be_visible()
        page.locator(".melasma-form").first.evaluate("form => form.scrollIntoView()")  # the rater at the form
        inside_viewport(page, "#annotate-photo img")  # the whole face, chin included, beside the form
        inside_viewport(page, "#annotate-outlines")
        shot(page, tmp_path, "layout_rate_1366x768")

        page.get_by_role("tab", name="Adjudicate", exact=True).click()
        expect(page.locator("#annotate-decisions")).to_contain_text("MASI before")  # headers, not "1 2 3"

        page.get_by_role("tab", name="Predict", exact=True).click()
        page.locator("input[type=file][accept='image/*']").set_input_files(str(photo))
        latency = page.locator("#predict-latency")
        expect(latency).to_contain_text("total")
        table, header = latency.locator("table").first.bounding_box(), latency.locator("th").nth(1).bounding_box()
        assert table and header and header["x"] + header["width"] <= table["x"] + table["width"] + 1  # ms column shown
        expect(latency.locator("th").nth(1)).to_be_visible()

        heatmaps = page.locator("img[src$='/image.png']")
        expect(heatmaps).to_have_count(3)
        fake = tmp_path / "holiday.jpg"
        fake.write_text("not a photo")
        page.locator("input[type=file][accept='image/*']").set_input_files(str(fake))
        expect(heatmaps).to_have_count(0)  # a refused photo leaves nothing of the one before

        page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        page.evaluate("window.scrollTo(0, 0)")
        shot(page, tmp_path, "layout_predict_390x844")
