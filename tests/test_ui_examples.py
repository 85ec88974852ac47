"""The Predict tab's example sets: real photos first with their credit, synthetic ones after."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from melasma.cli.settings_flags import settings_from_args
from melasma.settings import Settings
from melasma.ui.app import example_files, launch_options
from melasma.ui.examples import credit, real_examples, shows_a_face, synthetic_examples


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (180, 140, 120)).save(path)
    return path


def test_the_roboflow_folder_is_credited_from_its_attribution(roboflow_dir: Path) -> None:
    folder = roboflow_dir / "melasma"
    examples = real_examples(folder)
    assert examples is not None
    assert examples.label == "Real photos (Roboflow melasma sample (train split), CC BY 4.0)"
    assert len(examples.photos) == 4
    assert all(p.parent == folder and p.suffix == ".jpg" for p in examples.photos)
    assert [p.name.lower() for p in examples.photos] == sorted(p.name.lower() for p in examples.photos)
    assert all(map(shows_a_face, examples.photos))
    skipped = [p for p in real_examples(folder, keep=None).photos if p not in examples.photos]  # type: ignore[union-attr]
    assert skipped and not any(map(shows_a_face, skipped[:1]))  # the first photo, a cheek close-up, is passed over


def test_only_images_count_and_a_missing_credit_is_said(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    _photo(folder / "b.PNG")
    _photo(folder / "a.jpg")
    (folder / "notes.txt").write_text("not a photo")
    (folder / "sub.jpg").mkdir()  # a folder with an image's name
    examples = real_examples(folder, limit=5, keep=None)
    assert examples is not None
    assert [p.name for p in examples.photos] == ["a.jpg", "b.PNG"]
    assert examples.label == "Real photos (no credit file beside them)"
    (folder / "CREDITS.md").write_text("# Clinic archive\n\nShared under CC BY-SA 4.0 with consent.\n")
    assert credit(folder) == "Clinic archive, CC BY-SA 4.0"
    (tmp_path / "empty").mkdir()
    assert real_examples(tmp_path / "empty") is None
    assert real_examples(folder) is None  # no face in a plain 8 px square
    assert real_examples(None) is None


def test_synthetic_examples_wait_for_the_demo_set(tmp_path: Path) -> None:
    assert synthetic_examples(tmp_path / "demo") is None
    for i in range(6):
        _photo(tmp_path / "demo" / "images" / f"synth_{i:04d}.jpg")
    examples = synthetic_examples(tmp_path / "demo")
    assert examples is not None and examples.label == "Synthetic examples"
    assert [p.name for p in examples.photos] == [f"synth_{i:04d}.jpg" for i in range(4)]


def test_the_setting_is_checked_and_only_the_offered_files_are_served(tmp_path: Path, roboflow_dir: Path) -> None:
    with pytest.raises(ValueError, match="MELASMA_EXAMPLES_DIR / --examples: .* is not a folder"):
        Settings.from_env({"MELASMA_EXAMPLES_DIR": str(tmp_path / "nowhere")})
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((roboflow_dir / "melasma").glob("*.jpg"))[:8]:
        shutil.copy(photo, folder / photo.name)
    (folder / "private.json").write_text("{}")

    class Flags:
        examples = str(folder)

    settings = settings_from_args(Flags(), env={"MELASMA_DATA_DIR": str(tmp_path / "data")})  # type: ignore[arg-type]
    assert settings.examples_dir == folder
    offered = real_examples(folder)
    assert offered is not None and len(offered.photos) == 4
    assert example_files(settings) == [str(p.resolve()) for p in offered.photos]
    allowed = launch_options(settings, oauth=False)["allowed_paths"]
    assert str(folder.resolve()) not in allowed  # the folder itself (other photos, other files) stays private
    assert set(allowed) == set(example_files(settings))  # an allow-list of files: no folder, not the data folder
    assert example_files(Settings(data_dir=tmp_path / "data")) == []
