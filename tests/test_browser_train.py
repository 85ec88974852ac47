"""The Train tab in a real browser (Playwright + Debian chromium): a past job's error shows as plain
text (no link, no image), choosing the job fills the form with its settings, and its learning curves
are drawn from the stored epochs. Waits are on the page's state (Playwright's expect)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser_page import chromium_page
from live_app import live_app
from melasma.jobs.execute import config_to_dict
from melasma.jobs.store import JobStore
from melasma.training import TrainConfig

pytestmark = pytest.mark.browser

ERROR = "bad data [x](http://e) and ![i](http://e/i.png) **loud**"
expect.set_options(timeout=60_000)  # a loaded 2-core machine: events can take seconds


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium_page(1400, 900) as page:
        yield page


def past_failed_job(data_dir: Path) -> str:
    """A job that ended with ERROR after one epoch, as a restarted app finds it in its store."""
    store = JobStore(data_dir / "jobs.sqlite")
    config = TrainConfig(data=data_dir / "demo" / "labels.csv", archs=("resnet18",), epochs=7, batch_size=12,
                         image_size=48, device="cpu", pretrained="off", seed=5)
    store.add("20260101-000000-abcdef", config_to_dict(config), data_dir / "runs" / "20260101-000000-abcdef")
    assert store.claim("test|0|gone", lambda owner: False) == "20260101-000000-abcdef"
    store.add_event("20260101-000000-abcdef", "epoch", {"arch": "resnet18", "epoch": 1, "train_loss": 1.2,
                                                       "val_loss": 1.3, "train_acc": 0.4, "val_acc": 0.35})
    store.finish("20260101-000000-abcdef", "failed", error=ERROR)
    return "20260101-000000-abcdef"


def test_past_job_error_is_plain_text_and_its_settings_fill_the_form(page: Page, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    job_id = past_failed_job(data_dir)
    with live_app(data_dir) as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Train", exact=True).click()
        expect(page.get_by_label("State", exact=True)).to_have_value("failed")  # the latest job is shown
        page.get_by_label("Job", exact=True).click()
        page.get_by_role("option", name=f"{job_id} · resnet18").click()
        expect(page.get_by_label("Epochs", exact=True)).to_have_value("7")
        expect(page.get_by_label("Batch size", exact=True)).to_have_value("12")
        expect(page.get_by_label("Image size (px)", exact=True)).to_have_value("48")
        expect(page.get_by_label("Seed", exact=True)).to_have_value("5")
        expect(page.get_by_text(ERROR)).to_be_visible()  # the characters as typed ...
        assert page.locator('a[href="http://e"]').count() == 0  # ... not a link, an image or bold text
        assert page.locator('img[src="http://e/i.png"]').count() == 0
        assert page.locator("strong", has_text="loud").count() == 0
        expect(page.locator("#train-curves img").first).to_be_visible()  # drawn from the stored epoch
