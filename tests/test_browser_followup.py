"""The Patients tab in a real browser (Playwright + Debian chromium): the list loads when the tab
opens with the cohort's responders per window, search filters it, a click on a row opens the timeline, two visits are compared side by side with
per-region differences, and a patient's record is exported. Set MELASMA_SCREENSHOTS=docs/images to
refresh the docs' screenshot."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from annotation.store import RatingStore
from browser_page import chromium_page
from live_app import live_app
from melasma.data.longitudinal import generate
from melasma.followup.demo import load_into_store
from melasma.settings import Settings

pytestmark = pytest.mark.browser
expect.set_options(timeout=30_000)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(1400, 1000, screenshot=tmp_path / "last_page.png") as page:
        yield page


def section_shot(page: Page, tmp_path: Path, selector: str, name: str) -> None:
    """A screenshot of one part of the page, at most 1000 px wide, into MELASMA_SCREENSHOTS (if set)
    or the tmp folder."""
    folder = Path(os.environ.get("MELASMA_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.locator(selector).screenshot(path=str(path))
    with Image.open(path) as image:
        scale = min(1.0, 1000 / image.width)
        small = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    small.quantize(colors=128).save(path, optimize=True)


def test_patients_tab_timeline_compare_export(page: Page, tmp_path: Path) -> None:
    generate(tmp_path / "set", patients=4, visits=4, size=128, seed=2)
    settings = Settings(data_dir=tmp_path / "data")
    load_into_store(tmp_path / "set", RatingStore(settings.data_dir / "annotations.sqlite"), settings)
    with live_app(tmp_path / "data") as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Patients", exact=True).click()
        table = page.locator("#patients-table")
        expect(table).to_contain_text("P003")
        page.get_by_text("Cohort: responders per visit window").click()
        expect(page.locator("#patients-cohort")).to_contain_text("10-14")  # visits every 4 weeks: weeks 4, 8, 12
        page.locator("#patients-search input, #patients-search textarea").first.fill("P002")
        page.locator("#patients-search input, #patients-search textarea").first.press("Enter")
        expect(table).not_to_contain_text("P003")
        table.get_by_role("gridcell", name="P002", exact=True).click()  # a click on the row opens it
        expect(page.locator("#patients-id input, #patients-id textarea").first).to_have_value("P002")
        expect(page.locator("#patients-timeline img")).to_be_visible()
        expect(page.locator("#patients-visits")).to_contain_text("complete")
        section_shot(page, tmp_path, "#patients-timeline", "patients_timeline")
        page.locator("#patients-compare").click()
        expect(page.locator("#patients-compare-note")).to_contain_text("aligned by")
        expect(page.locator("#patients-before img")).to_be_visible()
        expect(page.locator("#patients-after img")).to_be_visible()
        expect(page.locator("#patients-compare-table")).to_contain_text("left malar")
        section_shot(page, tmp_path, "#patients-compare-section", "patients_compare")
        page.get_by_role("button", name="Export this patient (PNG + CSV)").click()
        expect(page.locator("#patients-files")).to_contain_text("P002_visits")
        expect(page.locator(".toast-body.error")).to_have_count(0)
