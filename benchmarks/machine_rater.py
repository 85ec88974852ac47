"""How well the image-derived MASI (the Agreement dashboard's machine "rater") agrees with raters.

On the semi-synthetic set (melasma painted into the regions of real faces, true MASI known, three
simulated raters) it prints ICC(2,1) of machine vs the raters' consensus and vs the truth, beside one
simulated rater vs the consensus of the other two (what a human-like rater reaches on the same photos).

    python benchmarks/machine_rater.py [--data DIR] [--n 80] [--seed 3] [--json]
    python benchmarks/machine_rater.py --fit [--n 240] [--seed 11]

Without --data it makes a fresh set from ../shared/data/roboflow-melasma/non-melasma (needs those photos).
`--fit` refits `PigmentSettings.min_share` and the D cut points on the set's training bases (the A
bands and the pixel thresholds stay) and prints the ICC of the image-derived MASI on the validation
and test bases, before and after: the values `melasma.regions.pigment.DEFAULT` holds came from
`--fit --n 240 --seed 11`.
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

from dataclasses import replace

from melasma.data.images import load_image
from melasma.masi import REGION_WEIGHTS, REGIONS, region_score
from melasma.regions.find import find_regions
from melasma.regions.pigment import CARTOON, DEFAULT, PigmentSettings, area_item, measure_pigment
from melasma.regions.report import analyse
from melasma.regions.types import FaceNotFound
from melasma.stats.agreement import icc, icc_ci

BASES = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma" / "non-melasma"
RATERS = ("r1", "r2", "r3")


def _make_set(folder: Path, n: int, seed: int) -> Path:
    subprocess.run([sys.executable, "-m", "melasma", "synth", "--base-photos", str(BASES), "--out", str(folder),
                    "-n", str(n), "--size", "384", "--seed", str(seed)], check=True, capture_output=True)
    return folder


def _rater_masi(labels: pd.DataFrame, rater: str) -> np.ndarray:
    """One simulated rater's MASI from the item columns (A x (D + H), region-weighted)."""
    total = np.zeros(len(labels))
    for region in REGIONS:
        a, d, h = (labels[f"{rater}_{region}_{item}"].to_numpy(float) for item in ("area", "darkness", "homogeneity"))
        total += REGION_WEIGHTS[region] * region_score(a, d, h)
    return total


def _entry(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    table = np.column_stack([a, b])
    low, high = icc_ci(table, "2,1")
    return {"icc": round(icc(table, "2,1"), 3), "ci_low": round(low, 3), "ci_high": round(high, 3),
            "mae": round(float(np.abs(a - b).mean()), 2), "bias": round(float((a - b).mean()), 2),
            "pearson_r": round(float(np.corrcoef(a, b)[0, 1]), 3)}


def region_rows(folder: Path, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (photo, visible region): measured share, Weber darkness %, H item, true A, D, H."""
    probe = replace(DEFAULT, min_share=0.0)  # measure darkness in every region, whatever its share
    rows = []
    for index, label in labels.iterrows():
        image = load_image(folder / label["image"])
        try:
            regions = find_regions(image)
        except FaceNotFound:
            continue
        measures = measure_pigment(image, regions, probe)
        for name, measure in measures.regions.items():
            rows.append({"photo": index, "split": label["split"], "region": name,
                         "share": measure.pigmented_share, "darkness": 100 * measure.delta_L / measures.skin_L,
                         "H": measure.homogeneity_item, **{f"true_{item}": label[f"true_{name}_{item}"]
                                                           for item in ("area", "darkness", "homogeneity")}})
    return pd.DataFrame(rows)


def _items(rows: pd.DataFrame, settings: PigmentSettings) -> pd.DataFrame:
    area = np.array([area_item(share, settings.min_share) for share in rows["share"]])
    darkness = np.where(area > 0, 1 + np.searchsorted(settings.darkness_cuts, rows["darkness"], side="right"), 0)
    homogeneity = np.where(area > 0, rows["H"], 0)
    weight = rows["region"].map(REGION_WEIGHTS).to_numpy()
    truth = weight * region_score(rows["true_area"], rows["true_darkness"], rows["true_homogeneity"])
    return pd.DataFrame({"photo": rows["photo"], "masi": weight * region_score(area, darkness, homogeneity),
                         "true": truth})


def masi_icc(rows: pd.DataFrame, settings: PigmentSettings) -> float:
    """ICC(2,1) of image-derived vs true MASI over the photos in `rows`."""
    per_photo = _items(rows, settings).groupby("photo")[["masi", "true"]].sum()
    return round(icc(per_photo.to_numpy(), "2,1"), 3)


def fit(rows: pd.DataFrame) -> PigmentSettings:
    """min_share by the A items' ICC, D cuts so each D level is as common as in the truth (quantiles)."""
    def area_icc(min_share: float) -> float:
        measured = [area_item(share, min_share) for share in rows["share"]]
        return icc(np.column_stack([measured, rows["true_area"]]), "2,1")

    min_share = max((0.0, 0.01, 0.02, 0.05, 0.1, 0.15), key=area_icc)
    pigmented = rows[rows["true_area"] > 0]
    cuts = [float(np.quantile(pigmented["darkness"], 1 - (pigmented["true_darkness"] >= level).mean()))
            for level in (2, 3, 4)]
    return replace(CARTOON, min_share=min_share, darkness_cuts=tuple(round(float(c), 2) for c in np.maximum.accumulate(cuts)))


def main_fit(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data or _make_set(Path(scratch) / "set", args.n, args.seed)
        labels = pd.read_csv(folder / "labels.csv").head(args.n)
        rows = region_rows(folder, labels)
    train, held_out = rows[rows["split"] == "train"], rows[rows["split"] != "train"]
    fitted = fit(train)
    print(f"fitted on {train['photo'].nunique()} training photos: min_share={fitted.min_share}, "
          f"darkness_cuts={fitted.darkness_cuts}")
    print(f"MASI ICC(2,1) vs truth on {held_out['photo'].nunique()} held-out-base photos: cartoon calibration "
          f"{masi_icc(held_out, CARTOON)}, refitted {masi_icc(held_out, fitted)}, shipped DEFAULT "
          f"{masi_icc(held_out, DEFAULT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a semi-synthetic set (labels.csv, images/)")
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fit", action="store_true", help="refit min_share and the D cuts (see above)")
    args = parser.parse_args()
    if args.fit:
        main_fit(args)
        return
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
