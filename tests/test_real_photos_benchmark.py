"""benchmarks/real_photos.py on real photos: its JSON, --record, its exclusions, its errors, the tone baseline.

No old-vs-new ordering test: no semi-synthetic candidate was shipped (GoogLeNet 224 px on a GPU,
AUC 0.375; MobileNetV2 160 px on the CPU, 0.432; GoogLeNet 160 px on the CPU, 0.501, against the
shipped demo's 0.487: all at chance, none better on every measure), so only `melasma/weights/demo`
is in the repository (docs/demo-model.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "real_photos.py"
KEYS = {"images", "auc_melasma", "lrp_in_polygon_ratio", "gxi_in_polygon_ratio", "gradcam_in_polygon_ratio",
        "nonmelasma_mild_share", "tone_baseline_auc"}


def run_benchmark(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_json_keys_ranges_and_excluded_bases(roboflow_dir: Path, tmp_path: Path) -> None:
    others = sorted((roboflow_dir / "non-melasma").glob("*.jpg"))
    bases = tmp_path / "bases.json"
    bases.write_text(json.dumps({"train_bases": [others[0].name]}))
    result = run_benchmark(str(roboflow_dir), "--limit", "3", "--bases", str(bases))
    assert set(result) == KEYS
    assert result["images"] == 6  # 3 melasma + 3 without; the training base is skipped, the next taken
    for key in ("auc_melasma", "tone_baseline_auc", "nonmelasma_mild_share"):
        assert 0.0 <= result[key] <= 1.0, key
    for key in ("lrp_in_polygon_ratio", "gxi_in_polygon_ratio", "gradcam_in_polygon_ratio"):
        assert result[key] >= 0.0, key


def test_record_writes_what_it_printed(roboflow_dir: Path, tmp_path: Path) -> None:
    """`--record` leaves the printed numbers in real_photos.json beside the weights, which the
    Predict tab reads (melasma.real_photo_check)."""
    sys.path.insert(0, str(ROOT))
    from melasma.inference import default_checkpoint
    from melasma.real_photo_check import read_check

    weights = tmp_path / "weights"
    shutil.copytree(default_checkpoint(), weights)
    (weights / "real_photos.json").unlink()
    printed = run_benchmark(str(roboflow_dir), "--weights", str(weights), "--limit", "2", "--record",
                            "--machine", "a test machine")
    check = read_check(weights)
    assert check is not None
    assert {key: getattr(check, key) for key in KEYS} == printed
    assert check.melasma_images == 2 and check.images == 4
    assert check.measured.endswith(", a test machine") and check.source == roboflow_dir.name


def test_missing_bases_file_is_an_error(roboflow_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), str(roboflow_dir), "--bases", str(tmp_path / "nope.json")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode != 0 and "no such bases file" in done.stderr


def test_skin_tone_alone_separates_the_shared_photos(roboflow_dir: Path) -> None:
    """The confound every melasma-vs-not number must beat: mean skin tone (ITA) alone."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.real_photos import tone_baseline_auc

    auc = tone_baseline_auc(roboflow_dir, set())
    assert auc == pytest.approx(0.713, abs=0.005)  # measured over the 94 photos, 2026-11-27
