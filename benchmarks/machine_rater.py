"""How well the image-derived MASI (the Agreement dashboard's machine "rater") agrees with raters.

On the semi-synthetic set (melasma painted into the regions of real faces, true MASI known, three
simulated raters) it prints ICC(2,1) of machine vs the raters' consensus and vs the truth, beside one
simulated rater vs the consensus of the other two (what a human-like rater reaches on the same photos).

    python benchmarks/machine_rater.py [--data DIR] [--n 80] [--seed 3] [--json]

Without --data it makes a fresh set from ../shared/data/roboflow-melasma/non-melasma (needs those photos).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from annotation.agreement import icc, icc_ci
from melasma.data.images import load_image
from melasma.regions.report import analyse

BASES = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma" / "non-melasma"
RATERS = ("r1", "r2", "r3")


def _make_set(folder: Path, n: int, seed: int) -> Path:
    subprocess.run([sys.executable, "-m", "melasma", "synth", "--base-photos", str(BASES), "--out", str(folder),
                    "-n", str(n), "--size", "384", "--seed", str(seed)], check=True, capture_output=True)
    return folder


def _rater_masi(labels: pd.DataFrame, rater: str) -> np.ndarray:
    """One simulated rater's MASI from the item columns (A x (D + H), region-weighted)."""
    from melasma.masi import REGION_WEIGHTS, REGIONS

    total = np.zeros(len(labels))
    for region in REGIONS:
        a, d, h = (labels[f"{rater}_{region}_{item}"].to_numpy(float) for item in ("area", "darkness", "homogeneity"))
        total += REGION_WEIGHTS[region] * a * (d + h)
    return total


def _entry(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    table = np.column_stack([a, b])
    low, high = icc_ci(table, "2,1")
    return {"icc": round(icc(table, "2,1"), 3), "ci_low": round(low, 3), "ci_high": round(high, 3),
            "mae": round(float(np.abs(a - b).mean()), 2), "bias": round(float((a - b).mean()), 2),
            "pearson_r": round(float(np.corrcoef(a, b)[0, 1]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a semi-synthetic set (labels.csv, images/)")
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data or _make_set(Path(scratch) / "set", args.n, args.seed)
        labels = pd.read_csv(folder / "labels.csv").head(args.n)
        machine = []
        for name in labels["image"]:
            report = analyse(load_image(folder / name), labels=False)
            machine.append(np.nan if report.measures is None else report.measures.masi)
    machine_masi = np.array(machine, dtype=float)
    scored = np.isfinite(machine_masi)
    consensus, truth = labels["masi"].to_numpy(float), labels["true_masi"].to_numpy(float)
    one = _rater_masi(labels, "r1")
    others = (_rater_masi(labels, "r2") + _rater_masi(labels, "r3")) / 2
    result = {
        "images": len(labels), "scored": int(scored.sum()),
        "machine_vs_consensus": _entry(machine_masi[scored], consensus[scored]),
        "machine_vs_truth": _entry(machine_masi[scored], truth[scored]),
        "rater_vs_other_two": _entry(one[scored], others[scored]),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"semi-synthetic photos: {result['images']}, scored by the machine: {result['scored']}")
    print(f"{'comparison':<24}{'ICC(2,1)':>10}{'95% CI':>18}{'MAE':>8}{'bias':>8}{'r':>8}")
    for key in ("machine_vs_consensus", "machine_vs_truth", "rater_vs_other_two"):
        e = result[key]
        interval = f"{e['ci_low']:.2f} to {e['ci_high']:.2f}"
        print(f"{key:<24}{e['icc']:>10.3f}{interval:>18}{e['mae']:>8.2f}{e['bias']:>8.2f}{e['pearson_r']:>8.3f}")


if __name__ == "__main__":
    main()
