"""A real browser (Playwright + Debian chromium) walks the journey: add a photo, rate it, train a tiny
model, predict with it and see the heatmaps. Screenshots of each tab go to the test's tmp folder;
a failure prints the page's console errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from browser_page import chromium_page
from live_app import live_app
from melasma.data.synthetic import generate

pytestmark = pytest.mark.browser

RATERS = ("rater1", "rater2", "rater3")
TRAIN_WAIT_MS = 180_000
expect.set_options(timeout=30_000)  # a loaded 2-core CI machine: events can take seconds
#: the form's choice labels for area 2, darkness 2, homogeneity 1 (MASI = 1.0 x 2 x (2 + 1) = 6)
FORM = {"area": "2 · 10-29 %", "darkness": "2 · mild", "homogeneity": "1 · slight"}
REGIONS = ("forehead", "right_malar", "left_malar", "chin")
#: An unchecked checkpoint's class: one plain line under the caution, never the large headline.
DEMONSTRATION = re.compile(r"Demonstration of the method, not a grade: the CNN's class is (mild|moderate|severe)")


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(1280, 900, screenshot=tmp_path / "last_page.png") as page:
        yield page


def _choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the gr.Dropdown labelled `label`."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"tab_{name}.png"), full_page=True)


def test_journey_in_a_real_browser(page: Page, tmp_path: Path) -> None:
    generate(tmp_path / "clinic", n=3, size=96, seed=1)
    photo = tmp_path / "clinic" / "images" / "synth_0000.jpg"
    wide = tmp_path / "wide_face.jpg"
    Image.open(photo).resize((144, 96)).save(wide)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with live_app(tmp_path / "data", raters=RATERS) as (url, _):
        page.goto(url)
        top = {name: page.get_by_role("tab", name=name, exact=True) for name in ("Annotate", "Train", "Predict")}
        expect(top["Annotate"]).to_be_visible()

        # Annotate: add a photo
        page.get_by_role("tab", name="Add photos").click()
        page.locator("#annotate-files input[type=file]").set_input_files(str(photo))
        expect(page.get_by_role("cell", name="synth_0000.jpg")).to_be_visible()
        page.get_by_role("button", name="Add photos").click()
        expect(page.locator("#annotate-ingest-result")).to_contain_text("added")

        # Annotate: rate it (MASI updates live, submit stores it)
        page.get_by_role("tab", name="Rate").click()
        _choose(page, "Rater", "rater1")
        expect(page.get_by_text("rater1: 0 rated so far")).to_be_visible()
        for region in REGIONS:
            for item, choice in FORM.items():
                page.locator(f"#annotate-{region}-{item}").get_by_label(choice, exact=True).check()
        expect(page.get_by_text("MASI 6.0 (mild)")).to_be_visible()
        _shot(page, shots, "annotate")
        page.get_by_role("button", name="Submit rating").click()
        expect(page.get_by_text("no photos left to rate (1 rated)")).to_be_visible()

        # Train: one epoch of ResNet-18 at 32 px on the demo set
        top["Train"].click()
        page.get_by_label("MobileNetV2").uncheck()
        for label, value in (("Epochs", "1"), ("Batch size", "16"), ("Image size (px)", "32")):
            page.get_by_label(label, exact=True).fill(value)
        _choose(page, "Device", "cpu")
        _choose(page, "ImageNet weights", "off")
        page.get_by_role("button", name="Start", exact=True).click()
        expect(page.get_by_label("State", exact=True)).to_have_value("done", timeout=TRAIN_WAIT_MS)
        expect(page.get_by_text("Results (test set)")).to_be_visible()
        _shot(page, shots, "train")

        # Predict: the new checkpoint, a photo, a severity and three heatmaps
        top["Predict"].click()
        page.get_by_label("Checkpoint", exact=True).click()
        page.get_by_role("option", name=re.compile(r"resnet18$")).click()
        page.locator("input[type=file][accept='image/*']").set_input_files(str(wide))
        # an unchecked checkpoint: its class as a demonstration line (or, on a cartoon face the face mesh
        # misses, no severity at all)
        expect(page.get_by_text(re.compile(f"{DEMONSTRATION.pattern}|No face found")).first).to_be_visible(
            timeout=60_000)
        expect(page.get_by_test_id("label-output-value")).to_have_count(0)  # no headline severity
        heatmaps = page.locator("img[src$='/image.png']")  # the three overlays (LRP, Grad-CAM, GxI)
        expect(heatmaps).to_have_count(3, timeout=60_000)
        for i in range(3):
            expect(heatmaps.nth(i)).to_be_visible()
            size = heatmaps.nth(i).evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert size[0] / size[1] == pytest.approx(1.5, rel=0.03)  # the photo's 3:2 shape
        _shot(page, shots, "predict")

    assert sorted(p.name for p in shots.iterdir()) == ["tab_annotate.png", "tab_predict.png", "tab_train.png"]


def test_a_real_example_photo_is_offered_first_with_its_credit(page: Page, tmp_path: Path, roboflow_dir: Path) -> None:
    """`--examples` on the CC BY photos: the Predict tab lists them (credited) above the synthetic
    ones; clicking the first and Predict gives a severity, three heatmaps and the region table of
    a real face."""
    with live_app(tmp_path / "data", raters=RATERS, examples_dir=roboflow_dir / "melasma") as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Predict", exact=True).click()
        real = page.get_by_text("Real photos (Roboflow melasma sample (train split), CC BY 4.0)")
        expect(real).to_be_visible()
        synthetic = page.get_by_text("Synthetic examples")
        assert real.bounding_box()["y"] < synthetic.bounding_box()["y"]  # type: ignore[index]
        page.locator(".gallery-item").first.click()
        expect(page.locator("#predict-photo img")).to_be_visible()  # the example has reached the input
        page.get_by_role("button", name="Predict", exact=True).click()
        expect(page.get_by_text(DEMONSTRATION)).to_be_visible(timeout=60_000)
        expect(page.locator("img[src$='/image.png']")).to_have_count(3, timeout=60_000)
        expect(page.get_by_text("Not a grade on real photos.")).to_be_visible()  # the demo's measured check
        expect(page.get_by_test_id("label-output-value")).to_have_count(0)  # no headline severity
        table = page.get_by_label("Per region")
        for region in REGIONS:
            expect(table.get_by_role("gridcell", name=region.replace("_", " "), exact=True)).to_be_visible()
        expect(table.get_by_role("gridcell", name="yes", exact=True).first).to_be_visible()  # a region was read
