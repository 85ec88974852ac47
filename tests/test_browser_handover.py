"""Annotate -> Train in a real browser (Playwright + Debian chromium, 1366 x 768), started as a newcomer
starts it: from a folder, with the default relative data folder ``./data``. "Export and send to Train"
selects that export in the Train tab, which reads it (class counts, not "cannot be used")."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser_page import chromium_page
from live_app import live_app, rated_store
from melasma.settings import Settings

pytestmark = pytest.mark.browser
expect.set_options(timeout=60_000)  # a loaded 2-core machine: events can take seconds


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(1366, 768, screenshot=tmp_path / "last_page.png", full_page=False) as page:
        yield page


def test_export_and_send_to_train_selects_the_export(
    page: Page, tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MELASMA_DATA_DIR", raising=False)
    settings = Settings.from_env()
    shutil.copytree(synth_dir, tmp_path / "data" / "demo")
    rated_store(synth_dir, settings)
    with live_app(Path("data")) as (url, _):
        page.goto(url)
        page.get_by_role("tab", name="Train", exact=True).click()
        data_box = page.get_by_label("Manifest (labels.csv) or class folder")
        expect(data_box).to_have_value("demo/labels.csv")  # relative to the data folder, resolved once
        expect(page.get_by_text("60 photos.")).to_be_visible()  # the demo set is read, not data/data/demo

        page.get_by_role("tab", name="Annotate", exact=True).click()
        page.get_by_role("tab", name="Export", exact=True).click()
        page.get_by_role("button", name="Export and send to Train").click()
        handed = page.get_by_label("Manifest handed to the Train tab", exact=True)
        expect(handed).not_to_have_value("")
        manifest = handed.input_value()
        assert Path(manifest).is_file() and Path(manifest).is_relative_to(tmp_path / "data" / "exports")

        page.get_by_role("tab", name="Train", exact=True).click()
        expect(page.get_by_label("Annotate export", exact=True)).to_be_checked()
        expect(data_box).to_have_value(manifest)
        expect(page.get_by_text("24 photos.")).to_be_visible()
        expect(page.get_by_text("cannot be used")).to_have_count(0)
