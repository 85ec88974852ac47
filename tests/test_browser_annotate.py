"""The rating and coordinator screens in a real browser (Playwright + Debian chromium, 1400 x 900):
a first click right after a photo appears is kept, Submit is on screen, Area 0 fills darkness and
homogeneity, missing scores are named at once in a pop-up without error badges; then the coordinator's Photos,
Adjudicate and Export screens. Set MELASMA_SCREENSHOTS=docs/images to refresh the docs' screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image
from playwright.sync_api import Page, expect

from browser_page import chromium_page
from live_app import live_app
from melasma.data.synthetic import generate

pytestmark = pytest.mark.browser
expect.set_options(timeout=30_000)

VIEWPORT = {"width": 1400, "height": 900}
REGIONS = ("forehead", "right_malar", "left_malar", "chin")
FORM = {"area": "2 · 10-29 %", "darkness": "2 · mild", "homogeneity": "1 · slight"}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(VIEWPORT["width"], VIEWPORT["height"], screenshot=tmp_path / "last_page.png",
                       full_page=False) as page:
        yield page


def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot, shrunk to 1000 px wide, into MELASMA_SCREENSHOTS (if set) or the tmp folder."""
    folder = Path(os.environ.get("MELASMA_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))
    with Image.open(path) as image:
        small = image.convert("RGB").resize((1000, round(image.height * 1000 / image.width)), Image.LANCZOS)
    small.quantize(colors=128).save(path, optimize=True)


def radio(page: Page, region: str, item: str, choice: str):
    return page.locator(f"#annotate-{region}-{item}").get_by_label(choice, exact=True)


def test_rating_screen_and_coordinator_screens(page: Page, tmp_path: Path) -> None:
    generate(tmp_path / "clinic", n=4, size=256, seed=3)
    photos = sorted((tmp_path / "clinic" / "images").glob("*.jpg"))
    with live_app(tmp_path / "data", ratings_per_image=2, raters=("rater1", "rater2")) as (url, client):
        client.predict([handle_file(str(p)) for p in photos], "P-0042", "2026-11-02", api_name="/ingest")
        page.goto(url)
        expect(page.get_by_text("Local single-user mode")).to_be_visible()
        page.get_by_role("tab", name="Rate", exact=True).click()
        page.get_by_label("Rater", exact=True).click()
        page.get_by_role("option", name="rater1").click()

        for done in range(3):
            expect(page.get_by_text(f"rater1: {done} rated so far")).to_be_visible()
            first = radio(page, "forehead", "area", FORM["area"])
            first.check()  # the very first click after the photo appears
            if done == 0:
                # Submit is on screen at 1400 x 900 without scrolling
                box = page.locator("#annotate-submit").bounding_box()
                assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]
                # missing scores are named at once, in words, in one pop-up (as every refusal), with no
                # error badge on the form
                page.get_by_role("button", name="Submit rating").click()
                expect(page.locator(".toast-body.error")).to_have_count(1)
                expect(page.locator(".toast-body.error")).to_contain_text(
                    "Choose a darkness and a homogeneity for the forehead; an area, a darkness and a "
                    "homogeneity for the patient's right cheek;")
                expect(page.locator(".melasma-form [data-testid=status-tracker]:not(.hide) .error")).to_have_count(0)
                expect(first).to_be_checked()  # the form keeps what was chosen
                page.locator(".toast-body.error button").first.click()  # closed: it covers no radio
                # Area 0: darkness and homogeneity become 0 without a click
                radio(page, "chin", "area", "0 · none").check()
                expect(radio(page, "chin", "darkness", "0 · absent")).to_be_checked()
                expect(radio(page, "chin", "homogeneity", "0 · absent")).to_be_checked()
                # region outlines drawn on the photo on request (the form keeps its scores)
                plain = page.locator("#annotate-photo img").get_attribute("src")
                page.get_by_label("Show region outlines").check()
                expect(page.locator("#annotate-photo img")).not_to_have_attribute("src", plain)
                expect(radio(page, "chin", "darkness", "0 · absent")).to_be_checked()
                shot(page, tmp_path, "annotate_rate")
            if done == 1:  # the chin is not visible in this photo: no chin scores needed
                page.locator("#annotate-chin-hidden input").check()
            for region in REGIONS:
                for item, choice in FORM.items():
                    if (region, item) != ("forehead", "area") and not (done < 2 and region == "chin"):
                        radio(page, region, item, choice).check()
            expect(first).to_be_checked()  # not wiped by a form reset racing the click
            page.get_by_role("button", name="Submit rating").click()
            expect(page.locator("#annotate-result")).to_contain_text("Saved your rating of this photo")

        # rater2 closes three photos through the API: bins disputed on the first, the chin seen on the
        # second (where rater1 could not see it: disputed, left out of training until adjudicated)
        for i in range(3):
            image_id, _, _ = client.predict("rater2", api_name="/next_image")
            scores = [6, 4, 4] * 4 if i == 0 else [2, 2, 1] * 4
            client.predict("rater2", image_id, *scores, api_name="/submit_rating")

        page.get_by_role("tab", name="Photos", exact=True).click()
        page.get_by_role("button", name="Refresh", exact=True).first.click()
        table = page.locator("#annotate-photo-table")
        expect(table).to_contain_text("disputed")
        expect(table).to_contain_text("open")
        shot(page, tmp_path, "annotate_photos")

        page.get_by_role("tab", name="Adjudicate", exact=True).click()
        page.locator("#annotate-adjudicate-refresh").click()
        page.get_by_label("Closed photo (disputed first)", exact=True).click()
        page.get_by_role("option").filter(has_text="disputed").first.click()
        expect(page.get_by_text("status disputed")).to_be_visible()
        page.get_by_label("Adjudicated MASI", exact=True).fill("20")
        page.get_by_label("Reason (kept in the log)").first.fill("reviewed at full size")
        page.get_by_role("button", name="Record adjudicated MASI").click()
        expect(page.get_by_text("Recorded: local coordinator set MASI 20.0")).to_be_visible()
        expect(page.locator("#annotate-decisions")).to_contain_text("reviewed at full size")
        shot(page, tmp_path, "annotate_adjudicate")

        page.get_by_role("tab", name="Export", exact=True).click()
        page.get_by_role("button", name="Check class counts").click()
        expect(page.get_by_text("no severe photos")).to_be_visible()
        expect(page.locator("#annotate-counts")).to_contain_text("mild 1 · moderate 1 · severe 0")
        shot(page, tmp_path, "annotate_export")
