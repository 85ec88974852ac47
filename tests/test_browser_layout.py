"""A laptop screen (1366 x 768) shows what is being scored, in a real browser (Playwright + Debian
chromium): the whole rating photo and "Show region outlines" beside the form without scrolling; Predict's
latency table shows its ms column and its region table its last column; a refused photo gives one pop-up
and clears the photo before; the adjudication tables have headers even when empty; the Patients tables
read as tables (headers broken between words only, cells not editable); on a phone every tab is in the tab
bar; an upload past the hourly budget is refused with a pop-up and clears the photo before. Writes two
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
from melasma.data.longitudinal import generate as generate_visits
from melasma.data.synthetic import generate
from melasma.followup.demo import load_into_store
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


#: The words of a table's header cells that the browser broke across two lines ("Te st ph ot os").
SPLIT_WORDS = """table => [...table.querySelectorAll('thead th')].flatMap(th => {
  const split = [];
  const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const word of node.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      if (new Set([...range.getClientRects()].map(rect => Math.round(rect.top))).size > 1) split.push(word[0]);
    }
  }
  return split;
})"""


def readable_headers(page: Page, selector: str, expected: list[str]) -> None:
    """The table's visible header cells are `expected`, and no word of them is broken across lines."""
    table = page.locator(f"{selector} table").first
    shown = [text.strip() for text in table.locator("thead th").all_inner_texts()]
    assert [" ".join(text.split()) for text in shown if text] == expected
    assert table.evaluate(SPLIT_WORDS) == [], selector


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
        regions = page.locator("#predict-regions")
        expect(regions).to_contain_text("forehead")
        last = regions.locator("thead th").last  # "Gradient x input % in region", not cut off
        expect(last).to_contain_text("Gradient x input")
        box, frame = last.bounding_box(), regions.bounding_box()
        assert box and frame and box["width"] > 20 and box["x"] + box["width"] <= min(LAPTOP[0], frame["x"] + frame["width"]) + 1
        fake = tmp_path / "holiday.jpg"
        fake.write_text("not a photo")
        page.locator("input[type=file][accept='image/*']").set_input_files(str(fake))
        expect(page.locator(".toast-body.error")).to_contain_text("holiday.jpg: not a recognised image file")
        expect(heatmaps).to_have_count(0)  # a refused photo leaves nothing of the one before
        expect(page.locator("#predict-photo img")).to_have_count(0)  # nor itself, as a broken picture
        expect(regions).not_to_contain_text("forehead")
        page.wait_for_timeout(2_000)  # a second pop-up would have come by now
        expect(page.locator(".toast-body")).to_have_count(1)  # said once
        page.locator(".toast-body button").first.click()  # read: closed before the phone screenshot
        expect(page.locator(".toast-body")).to_have_count(0)
        page.locator("input[type=file][accept='image/*']").set_input_files(str(photo))  # the phone shows a reading
        expect(heatmaps).to_have_count(3)

        page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        page.evaluate("window.scrollTo(0, 0)")
        for name in ("Annotate", "Train", "Predict", "Patients"):  # the coordinator's tabs, none behind "..."
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        box = page.get_by_role("tab", name="Patients", exact=True).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0]
        shot(page, tmp_path, "layout_predict_390x844")


def test_patients_tables_read_as_tables(page: Page, tmp_path: Path) -> None:
    """The visits table: readable headers (words, not field names), not editable on a click; an empty
    table shows its headers, not "1 2 3"."""
    generate_visits(tmp_path / "set", patients=2, visits=3, size=128, seed=2)
    settings = Settings(data_dir=tmp_path / "data")
    load_into_store(tmp_path / "set", RatingStore(settings.data_dir / "annotations.sqlite"), settings)
    with live_app(tmp_path / "data") as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Patients", exact=True).click()
        compare = ["region", "before", "after", "difference"]
        readable_headers(page, "#patients-compare-table", compare)  # empty: its headers
        table = page.locator("#patients-table")
        expect(table).to_contain_text("P001")
        readable_headers(page, "#patients-table", ["patient", "visits", "scored", "baseline MASI", "latest MASI",
                                                   "change %", "MASI-50", "MASI-75", "treatment", "note"])
        table.get_by_role("gridcell", name="P001", exact=True).click()
        visits = page.locator("#patients-visits")
        expect(visits).to_contain_text("complete")
        readable_headers(page, "#patients-visits", [
            "visit date", "days from baseline", "status", "MASI", "MASI low", "MASI high", "change", "change %",
            "MASI-50", "MASI-75", "treatment", "notes"])
        visits.get_by_role("gridcell", name="complete").first.dblclick()
        page.keyboard.type("edited")
        expect(visits.locator("tbody input, tbody textarea")).to_have_count(0)  # read-only: no editor opens
        expect(visits).not_to_contain_text("edited")


def test_an_upload_past_the_budget_clears_the_photo_before(page: Page, tmp_path: Path) -> None:
    """The upload budget refuses a photo before any handler runs (HTTP 413): the page says why and keeps
    nothing of the photo before (the input's emptying clears the analysis)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = []
    for index in range(2):  # about 0.57 MB each: the second one passes the 1 MB hourly budget
        photos.append(tmp_path / f"noise{index}.jpg")
        Image.fromarray(rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)).save(photos[-1], quality=90)
    assert all(500_000 < photo.stat().st_size < 1_000_000 for photo in photos)
    with live_app(tmp_path / "data", max_upload_mb=1, upload_budget_mb_per_user=1, upload_budget_mb=1) as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Predict", exact=True).click()
        latency = page.locator("#predict-latency")
        page.locator("input[type=file][accept='image/*']").set_input_files(str(photos[0]))
        expect(latency).to_contain_text("total")
        page.locator("input[type=file][accept='image/*']").set_input_files(str(photos[1]))
        expect(page.locator(".toast-body.error")).to_contain_text("per person per hour")
        expect(latency).not_to_contain_text("total")
        expect(page.locator("#predict-photo img")).to_have_count(0)
