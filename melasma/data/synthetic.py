"""Labelled synthetic demo faces: pigmented patches with known MASI items, three simulated raters.

Each image is an oval face (skin tones across Fitzpatrick I-VI, hair, eyes, brows, mouth) under a
random pose and lighting. In each MASI region the pigmented patches cover the share of the region
given by the area score, darken the skin in proportion to the darkness score and are one uniform
patch (high homogeneity) or many small blotches of varying depth (low homogeneity). The true class
is sampled (balanced by default), then per-region scores whose MASI falls inside that class. Three
raters with small systematic biases plus +-1 noise score every image; the label is their consensus
(`melasma.masi.consensus`), so a few images land in a neighbouring class, as with real raters.
Everything is drawn from `numpy.random.default_rng`, so a seed gives the same bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from melasma.errors import UserError
from melasma.masi import ITEM_RANGES, REGION_WEIGHTS, REGIONS, SEVERITIES, consensus, region_score

#: Fitzpatrick skin types I-VI, typical RGB skin colours.
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "I": (246, 218, 196), "II": (236, 192, 160), "III": (214, 166, 124),
    "IV": (184, 128, 88), "V": (132, 86, 56), "VI": (88, 58, 40),
}
HAIR_COLOURS = ((30, 22, 18), (70, 45, 28), (120, 80, 45), (190, 150, 90), (55, 50, 48))

#: Region ellipses in face coordinates (u right, v down, face = unit circle): centre and semi-axes.
REGION_SHAPES: dict[str, tuple[float, float, float, float]] = {
    "forehead": (0.0, -0.58, 0.55, 0.17),
    "right_malar": (-0.47, 0.17, 0.25, 0.19),  # the patient's right is the viewer's left
    "left_malar": (0.47, 0.17, 0.25, 0.19),
    "chin": (0.0, 0.80, 0.24, 0.11),
}
#: Area score -> (low, high) share of the region covered, inside the score's band.
AREA_SHARES: dict[int, tuple[float, float]] = {
    1: (0.04, 0.09), 2: (0.12, 0.27), 3: (0.32, 0.47), 4: (0.52, 0.67), 5: (0.72, 0.87), 6: (0.92, 1.0),
}
#: Per class: (area, darkness, homogeneity) sampling ranges and the true MASI window.
CLASS_PRIORS: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[float, float]]] = {
    "mild": ((0, 3), (1, 2), (1, 4), (0.0, 15.5)),
    "moderate": ((2, 5), (1, 4), (1, 4), (16.5, 31.5)),
    "severe": ((4, 6), (3, 4), (2, 4), (32.5, 48.0)),
}
#: Rater systematic biases: (item, shift, probability); every item also gets +-1 with NOISE_P.
RATER_BIASES: tuple[tuple[str, int, float], ...] = (
    ("darkness", +1, 0.3), ("area", -1, 0.25), ("homogeneity", -1, 0.3),
)
NOISE_P = 0.15
RENDER_SIZE = 256
DARKNESS_STEP = 0.18  # relative darkening of the skin per darkness point
PIGMENT_TINT = np.array([0.85, 1.0, 1.2])  # melanin absorbs blue more than red

Scores = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Appearance:
    """What stays the same across one patient's photos."""

    fitzpatrick: str
    skin: np.ndarray
    hair: np.ndarray
    background: np.ndarray
    face_axes: tuple[float, float]


def _region_masi(scores: Scores) -> float:
    return sum(REGION_WEIGHTS[r] * region_score(**s) for r, s in scores.items())


def sample_true_scores(rng: np.random.Generator, severity: str) -> Scores:
    """Per-region A/D/H drawn from the class prior until the true MASI lies in the class window."""
    (a_lo, a_hi), (d_lo, d_hi), (h_lo, h_hi), (m_lo, m_hi) = CLASS_PRIORS[severity]
    while True:
        scores: Scores = {}
        for region in REGIONS:
            area = int(rng.integers(a_lo, a_hi + 1))
            if area == 0:
                scores[region] = {"area": 0, "darkness": 0, "homogeneity": 0}
            else:
                scores[region] = {
                    "area": area,
                    "darkness": int(rng.integers(d_lo, d_hi + 1)),
                    "homogeneity": int(rng.integers(h_lo, h_hi + 1)),
                }
        if m_lo <= _region_masi(scores) <= m_hi:
            return scores


def rate(rng: np.random.Generator, true: Scores, rater: int) -> Scores:
    """One simulated rater's scores: the truth plus the rater's bias and random +-1 noise."""
    bias_item, bias_shift, bias_p = RATER_BIASES[rater % len(RATER_BIASES)]
    scores: Scores = {}
    for region in REGIONS:
        if true[region]["area"] == 0:  # raters agree on clear skin
            scores[region] = dict(true[region])
            continue
        scores[region] = {}
        for item, (low, high) in ITEM_RANGES.items():
            value = true[region][item]
            if item == bias_item and rng.random() < bias_p:
                value += bias_shift
            if rng.random() < NOISE_P:
                value += int(rng.choice((-1, 1)))
            scores[region][item] = int(np.clip(value, max(low, 1), high))
    return scores


def sample_appearance(rng: np.random.Generator) -> Appearance:
    fitz = str(rng.choice(list(SKIN_TONES)))
    skin = np.array(SKIN_TONES[fitz], float) / 255 * rng.uniform(0.95, 1.05, 3)
    hair = np.array(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], float) / 255
    background = rng.uniform(0.25, 0.85, (2, 3))
    return Appearance(fitz, np.clip(skin, 0, 1), hair, background,
                      (float(rng.uniform(0.28, 0.32)), float(rng.uniform(0.38, 0.42))))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Gaussian noise on a cells x cells grid, bicubically upsampled to size x size."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))


def _zscore(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    sel = values[inside]
    return (values - sel.mean()) / (sel.std() + 1e-6)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float) -> np.ndarray:
    return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2


def _lesion(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, region: str, item: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(hard mask, pigment strength 0-1) of one region's patches for its A/D/H scores."""
    size = u.shape[0]
    cu, cv, au, av = REGION_SHAPES[region]
    inside = _ellipse(u, v, cu, cv, au, av) <= 1
    share = rng.uniform(*AREA_SHARES[item["area"]])
    homogeneity = item["homogeneity"] / 4
    bu, bv = cu + rng.uniform(-0.4, 0.4) * au, cv + rng.uniform(-0.4, 0.4) * av
    blob = -_ellipse(u, v, bu, bv, au, av)
    blotches = _smooth_noise(rng, size, int(44 - 26 * homogeneity))
    field = homogeneity * _zscore(blob, inside) + (1.15 - homogeneity) * _zscore(blotches, inside)
    threshold = np.quantile(field[inside], 1 - share) if share < 1 else -np.inf
    mask = inside & (field >= threshold)
    depth = 1 - (1 - homogeneity) * 0.5 * np.clip(_smooth_noise(rng, size, 30) * 0.5 + 0.5, 0, 1)
    soft = np.asarray(Image.fromarray(mask.astype(np.float32)).resize(
        (size // 2, size // 2), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.BILINEAR))
    return mask, soft * depth * item["darkness"] * DARKNESS_STEP


def render(
    rng: np.random.Generator, look: Appearance, true: Scores, size: int = RENDER_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face; returns (uint8 RGB image, bool lesion mask), both size x size."""
    n = max(size, RENDER_SIZE)
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n - 0.5
    angle = np.deg2rad(rng.uniform(-12, 12))
    scale = rng.uniform(0.9, 1.08)
    cx, cy = rng.uniform(-0.05, 0.05), 0.04 + rng.uniform(-0.04, 0.04)
    au, av = look.face_axes[0] * scale, look.face_axes[1] * scale
    dx, dy = xx - cx, yy - cy
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / au
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / av

    t = np.clip(yy + 0.5, 0, 1)[..., None]
    img = look.background[0] * (1 - t) + look.background[1] * t
    skin = look.skin
    neck = (np.abs(u) < 0.5) & (v > 0.5)
    img[neck] = skin * 0.85
    hair = (_ellipse(u, v, 0, -0.12, 1.13, 1.02) <= 1) & (v < 0.15)
    img[hair] = look.hair
    face = u**2 + v**2 <= 1
    shading = 1 - 0.22 * np.clip(u**2 + v**2, 0, 1) ** 2
    img[face] = skin * shading[face][:, None]
    img[face & (v < -0.86 + 0.3 * u**2)] = look.hair  # hairline

    mask = np.zeros((n, n), bool)
    pigment = np.zeros((n, n), np.float32)
    for region in REGIONS:
        if true[region]["area"] > 0:
            region_mask, strength = _lesion(rng, u, v, region, true[region])
            mask |= region_mask
            pigment = np.maximum(pigment, strength)
    pigment *= face
    img = img * (1 - np.clip(pigment[..., None] * PIGMENT_TINT, 0, 0.9))

    for side in (-1, 1):
        brow = (_ellipse(u, v, side * 0.36, -0.33, 0.2, 0.045) <= 1)
        img[brow] = look.hair * 0.9 + skin * 0.1
        eye = _ellipse(u, v, side * 0.36, -0.16, 0.15, 0.07) <= 1
        img[eye] = (0.93, 0.92, 0.9)
        img[_ellipse(u, v, side * 0.36, -0.16, 0.06, 0.06) <= 1] = (0.2, 0.13, 0.08)
    nose = _ellipse(u, v, 0, 0.22, 0.09, 0.06) <= 1
    img[nose] = skin * 0.8
    mouth = _ellipse(u, v, 0, 0.5, 0.24, 0.06) <= 1
    img[mouth] = skin * np.array([0.95, 0.55, 0.55])

    angle_light = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.05, 0.2) * (np.cos(angle_light) * xx + np.sin(angle_light) * yy) * 2
    img = img * light[..., None] + rng.normal(0, rng.uniform(0.005, 0.02), img.shape)
    out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    if n != size:
        out = np.asarray(Image.fromarray(out).resize((size, size), Image.Resampling.BILINEAR))
        mask = np.asarray(Image.fromarray(mask.astype(np.float32)).resize(
            (size, size), Image.Resampling.BOX)) >= 0.5
    return out, mask


#: The per-region item columns of labels.csv: the true scores, then each simulated rater's.
ITEM_COLUMNS = (
    [f"true_{r}_{i}" for r in REGIONS for i in ITEM_RANGES]
    + [f"r{k}_{r}_{i}" for k in (1, 2, 3) for r in REGIONS for i in ITEM_RANGES]
)


def item_values(true: Scores, raters: Sequence[Scores]) -> dict[str, int]:
    """One labels.csv row's ITEM_COLUMNS: the true A / D / H per region, then each rater's."""
    values = {f"true_{r}_{i}": true[r][i] for r in REGIONS for i in ITEM_RANGES}
    for k, scores in enumerate(raters, start=1):
        values.update({f"r{k}_{r}_{i}": scores[r][i] for r in REGIONS for i in ITEM_RANGES})
    return values


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> Path:
    """Write `rows` to `path` as CSV with these columns; returns the path."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_labels(out: Path, columns: Sequence[str], rows: Sequence[dict[str, object]]) -> Path:
    """Write `out/labels.csv` with these columns; returns its path."""
    return write_csv(out / "labels.csv", columns, rows)


def check_size(size: int) -> None:
    """Refuse an image side the generators cannot draw sensibly (16-2048 px)."""
    if not 16 <= size <= 2048:
        raise UserError(f"size must be 16-2048 pixels, got {size}")


def _columns() -> list[str]:
    return ["image", "masi", "severity", "patient_id", "true_masi", "true_severity", "fitzpatrick", *ITEM_COLUMNS]


def generate(
    out_dir: str | Path, n: int = 90, seed: int = 0, size: int = 256, balanced: bool = True
) -> Path:
    """Write `images/*.jpg`, `masks/*.png` and `labels.csv` under `out_dir`; returns labels.csv."""
    if n < 1:
        raise UserError(f"n must be at least 1 image, got {n}")
    check_size(size)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if balanced:
        classes = [SEVERITIES[i % 3] for i in range(n)]
        classes = [classes[i] for i in rng.permutation(n)]
    else:
        classes = [str(c) for c in rng.choice(SEVERITIES, size=n, p=(0.5, 0.35, 0.15))]

    rows = []
    patient, left = -1, 0
    look: Appearance  # drawn for each new patient, the first one included (left starts at 0)
    for i, severity in enumerate(classes):
        if left == 0:  # a new patient with 1-3 photos
            patient += 1
            left = int(rng.choice((1, 2, 3), p=(0.4, 0.35, 0.25)))
            look = sample_appearance(rng)
        left -= 1
        image_rng = np.random.default_rng([seed, i])
        true = sample_true_scores(image_rng, severity)
        raters = [rate(image_rng, true, k) for k in range(3)]
        agreed = consensus(raters)
        pixels, mask = render(image_rng, look, true, size)
        name = f"synth_{i:04d}"
        Image.fromarray(pixels).save(out / "images" / f"{name}.jpg", quality=int(image_rng.integers(82, 96)))
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{name}.png")
        true_masi = round(_region_masi(true), 10)
        row = {
            "image": f"images/{name}.jpg", "masi": agreed.masi, "severity": agreed.severity,
            "patient_id": f"P{patient:04d}", "true_masi": true_masi,
            "true_severity": severity, "fitzpatrick": look.fitzpatrick,
        }
        row.update(item_values(true, raters))
        rows.append(row)
    return write_labels(out, _columns(), rows)


def rater_scores(row: Mapping[str, str | int | float], rater: int) -> Scores:
    """Rebuild rater `rater` (1-3) scores from one labels.csv row (as a dict)."""
    return {r: {i: int(row[f"r{rater}_{r}_{i}"]) for i in ITEM_RANGES} for r in REGIONS}

