"""Calibration and check of the pigment measure on the synthetic set (true per-region A, D, H known).

The cartoon faces of `melasma.data.synthetic` have no landmarks a face mesh could find, so the
regions come from the generator's own geometry: each image is drawn with `render`, and its pose
(angle, scale, centre) is read from a copy of the random generator before the draw, exactly as
`render` consumes it; region masks are the generator's region ellipses minus eyes, brows, nose,
mouth and hair. Prints, per item, the ICC(2,1) between estimated and true scores over all
(image, region) pairs, and with `--fit` the D and H cut points that best match the truth on this
set (the values `melasma.regions.pigment.CARTOON` holds were fitted with `--fit --seed 0 --n 150`).

    python benchmarks/regions_synthetic.py [--n 150] [--seed 1] [--fit] [--json]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.data import synthetic
from melasma.masi import REGIONS, SEVERITIES
from melasma.regions.pigment import CARTOON, PigmentSettings, measure_pigment
from melasma.regions.types import FaceRegions, Region
from melasma.stats.agreement import icc

SIZE = 256


def _features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Eyes, brows, nose, mouth and the hairline in the generator's face coordinates."""
    ell = synthetic._ellipse
    out = (ell(u, v, 0, 0.22, 0.11, 0.08) <= 1) | (ell(u, v, 0, 0.5, 0.27, 0.09) <= 1)
    for side in (-1, 1):
        out |= ell(u, v, side * 0.36, -0.33, 0.23, 0.07) <= 1
        out |= ell(u, v, side * 0.36, -0.16, 0.18, 0.1) <= 1
    return out | (v < -0.86 + 0.3 * u**2)


def synthetic_face(seed: int, index: int) -> tuple[np.ndarray, FaceRegions, dict[str, dict[str, int]]]:
    """One synthetic photo, its regions from the generator's geometry, and its true scores."""
    rng = np.random.default_rng([seed, index])
    severity = SEVERITIES[index % len(SEVERITIES)]
    fitzpatrick = list(synthetic.SKIN_TONES)[int(rng.integers(len(synthetic.SKIN_TONES)))]
    look = synthetic.Appearance(
        fitzpatrick=fitzpatrick,
        skin=np.array(synthetic.SKIN_TONES[fitzpatrick], float) / 255,
        hair=np.array(synthetic.HAIR_COLOURS[int(rng.integers(len(synthetic.HAIR_COLOURS)))], float) / 255,
        background=rng.uniform(0.25, 0.85, (2, 3)),
        face_axes=(0.3, 0.4),
    )
    true = synthetic.sample_true_scores(rng, severity)
    pose = copy.deepcopy(rng)  # render draws angle, scale, centre first
    angle = np.deg2rad(pose.uniform(-12, 12))
    scale = pose.uniform(0.9, 1.08)
    cx, cy = pose.uniform(-0.05, 0.05), 0.04 + pose.uniform(-0.04, 0.04)
    pixels, _ = synthetic.render(rng, look, true, SIZE)

    yy, xx = (np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5) / SIZE - 0.5
    au, av = look.face_axes[0] * scale, look.face_axes[1] * scale
    dx, dy = xx - cx, yy - cy
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / au
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / av
    skin = (u**2 + v**2 <= 0.97) & ~_features(u, v)
    regions = {}
    for name in REGIONS:
        cu, cv, ru, rv = synthetic.REGION_SHAPES[name]
        mask = skin & (synthetic._ellipse(u, v, cu, cv, ru, rv) <= 1)
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pu, pv = cu + ru * np.cos(t), cv + rv * np.sin(t)
        px = (np.cos(angle) * pu * au - np.sin(angle) * pv * av + cx + 0.5) * SIZE
        py = (np.sin(angle) * pu * au + np.cos(angle) * pv * av + cy + 0.5) * SIZE
        regions[name] = Region(name, mask, np.stack([px, py], axis=1), visible=True)
    found = FaceRegions((SIZE, SIZE), np.zeros((0, 2)), regions, skin, note="synthetic geometry")
    return pixels, found, true


def collect(n: int, seed: int, settings: PigmentSettings) -> tuple[np.ndarray, np.ndarray]:
    """(true items, measured) over all (image, region) pairs: true (m, 3) A, D, H; measured (m, 5)
    A, D, H estimates, delta L*, homogeneity."""
    truth, measured = [], []
    for index in range(n):
        pixels, regions, true = synthetic_face(seed, index)
        result = measure_pigment(pixels, regions, settings)
        for name in REGIONS:
            m = result.regions[name]
            truth.append([true[name]["area"], true[name]["darkness"], true[name]["homogeneity"]])
            measured.append([m.area_item, m.darkness_item, m.homogeneity_item, 100 * m.delta_L / result.skin_L,
                             m.homogeneity])
    return np.array(truth, float), np.array(measured, float)


def fit_cuts(values: np.ndarray, truth: np.ndarray, levels: range) -> tuple[float, ...]:
    """Cut points between consecutive true levels: midpoints of the per-level medians (monotone)."""
    medians = [float(np.median(values[truth == level])) if (truth == level).any() else np.nan for level in levels]
    medians = np.maximum.accumulate(np.nan_to_num(medians, nan=-np.inf))
    return tuple(round(float((a + b) / 2), 3) for a, b in itertools.pairwise(medians))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=150, help="synthetic photos (default 150)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1; 0 was the fit set)")
    parser.add_argument("--fit", action="store_true", help="fit the D and H cut points on this set first")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    settings = CARTOON
    if args.fit:
        truth, measured = collect(args.n, args.seed, settings)
        affected = truth[:, 0] > 0
        settings = replace(
            settings,
            darkness_cuts=fit_cuts(measured[affected, 3], truth[affected, 1], range(1, 5)),
            homogeneity_cuts=fit_cuts(measured[affected, 4], truth[affected, 2], range(1, 5)),
        )
    truth, measured = collect(args.n, args.seed, settings)
    result = {
        "images": args.n,
        "seed": args.seed,
        "icc_area": icc(np.stack([truth[:, 0], measured[:, 0]], axis=1)),
        "icc_darkness": icc(np.stack([truth[:, 1], measured[:, 1]], axis=1)),
        "icc_homogeneity": icc(np.stack([truth[:, 2], measured[:, 2]], axis=1)),
        "darkness_cuts": list(settings.darkness_cuts),
        "homogeneity_cuts": list(settings.homogeneity_cuts),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:18s} {value if not isinstance(value, float) else round(value, 3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
