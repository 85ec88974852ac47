"""Issue 30 item 5: the web server serves an allow-list (the example photos the pages show), not the
data folder minus a block-list: runs, caches and the machine MASI are never downloadable by URL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from live_app import live_app
from melasma.settings import Settings
from melasma.ui.app import served_files

pytestmark = pytest.mark.live


def test_only_the_example_photos_are_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    secret = {
        "cache/machine_masi.json": '{"0123456789abcdef": 12.5}',
        "cache/images/224/abcdef.npy": "x",
        "runs/20261206-000000/train.log": "log",
        "runs/20261206-000000/resnet18/model.json": "{}",
        "runs/20261206-000000/resnet18/metrics.json": "{}",
        "notes.txt": "anything else in the data folder",
    }
    for name, text in secret.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(text)
    with live_app(data) as (url, _):
        allowed = served_files(Settings(data_dir=data))
        assert allowed and all("/demo/images/" in path for path in allowed)
        assert httpx.get(f"{url}gradio_api/file={allowed[0]}").status_code == 200
        for name in secret:
            answer = httpx.get(f"{url}gradio_api/file={(data / name).resolve()}")
            assert answer.status_code in (403, 404), name
        other_demo = max((data / "demo" / "images").glob("*.jpg")).resolve()
        assert str(other_demo) not in allowed
        assert httpx.get(f"{url}gradio_api/file={other_demo}").status_code in (403, 404)
        config = httpx.get(f"{url}config").text
        assert str(data.resolve()) not in config
