"""Write a semi-synthetic data set: melasma painted onto real photos of faces without melasma.

For each image: a training base (round robin over a shuffled list), a balanced label (the raters'
consensus class), a clinical pattern that can reach it, true per-region A/D/H
(`melasma.data.synthetic.sample_true_scores`, kept to the pattern's visible regions and re-drawn
until the MASI stays in the class window), three simulated raters and their consensus
(`synthetic.rate`, `melasma.masi.consensus`). The photo is maybe mirrored (right and left malar
swap), moved to a skin tone (ITA) stratified identically within each class (independent of the
severity), painted, given a shadow or moles by chance (`camera.scene`), cropped tightly around the
face or to one region, relit, given a flash look, blur or resampling by chance (`camera.camera`)
and saved at a random JPEG quality.

Bases are split once, deterministically: the `holdout` names whose SHA-256 of the file name sort
first (or the names in a holdout list file) are never used and are written to `holdout.txt` and
`bases.json`, beside `labels.csv`, `images/*.jpg` and `masks/*.png`. Regions are found once per base.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from melasma.data.images import load_image
from melasma.data.synthetic import (
    CLASS_PRIORS,
    ITEM_COLUMNS,
    Scores,
    item_values,
    rate,
    sample_true_scores,
    write_labels,
)
from melasma.data.tone import mean_ita, shift_ita, skin_mask
from melasma.errors import UserError
from melasma.masi import REGIONS, SEVERITIES, Consensus, consensus, masi
from melasma.regions import FaceNotFound, find_regions
from melasma.semisynthetic.camera import camera, jpeg, scene
from melasma.semisynthetic.paint import PATTERNS, paint

#: Default number of bases held out for evaluation.
HOLDOUT = 17
#: Shares of the training bases whose images form the val and test splits (grouped by base).
SPLIT_SHARES = (0.17, 0.07)
#: Skin tone range the whole face is moved to (ITA degrees: dark brown to very light).
ITA_RANGE = (-40.0, 62.0)
#: Patterns tried per severity, with probabilities (severe needs all four regions).
PATTERN_PRIORS: dict[str, dict[str, float]] = {
    "mild": {"centrofacial": 0.4, "malar": 0.35, "mandibular": 0.25},
    "moderate": {"centrofacial": 0.6, "malar": 0.4},
    "severe": {"centrofacial": 1.0},
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DRAWS = 60
#: Longer side, in pixels, that bases are painted at before the crop (larger for larger outputs).
WORK_SIZE = 320
#: Share of images cropped as close-ups (a cheek, the forehead or the chin fills the frame), as
#: many clinical photos are; the label stays the whole face's, as painted before the crop.
CLOSE_UP = 0.35
#: Side of a whole-face crop relative to the face's extent: clinical photos frame the face tightly.
FACE_CROP = (0.8, 1.3)
#: Regions a severity needs visible: severe needs the forehead and both cheeks, moderate both cheeks
#: or the forehead and one (weights 0.3 each), mild any region.
_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "mild": ((),),
    "moderate": (("right_malar", "left_malar"), ("forehead", "right_malar"), ("forehead", "left_malar")),
    "severe": (("forehead", "right_malar", "left_malar"),),
}


def can_show(severity: str, visible: Sequence[str]) -> bool:
    """Whether a face with these visible regions can reach `severity`."""
    return any(set(needed) <= set(visible) for needed in _NEEDS[severity])


class BaseError(UserError):
    """The base photos cannot make the requested data set (too few faces, bad holdout list)."""


@dataclass(frozen=True)
class Base:
    """One training base: its pixels, region masks, face skin mask and measured tone."""

    name: str
    image: np.ndarray
    regions: dict[str, np.ndarray]  # visible regions only
    face: np.ndarray

    @property
    def tone(self) -> float:
        """Mean ITA of the face's skin."""
        return mean_ita(self.image, self.face)


@dataclass(frozen=True)
class BaseSplit:
    """Which photos may be training bases and which are held out for evaluation."""

    train: list[str]
    holdout: list[str]


def split_bases(names: Sequence[str], holdout: int = HOLDOUT, holdout_list: Sequence[str] | None = None) -> BaseSplit:
    """Hold out the given names, or the `holdout` names whose SHA-256 sorts first."""
    ordered = sorted(names)
    if holdout_list is not None:
        unknown = sorted(set(holdout_list) - set(ordered))
        if unknown:
            raise BaseError(f"holdout list names photos not among the bases: {', '.join(unknown[:5])}")
        held = set(holdout_list)
    else:
        held = set(sorted(ordered, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:holdout])
    return BaseSplit([n for n in ordered if n not in held], [n for n in ordered if n in held])


def list_bases(directory: Path) -> list[str]:
    """Image file names in `directory` (refuses a folder named melasma: those are for evaluation)."""
    if directory.resolve().name == "melasma":
        raise BaseError(f"{directory}: melasma photos are for evaluation only, never bases")
    return sorted(p.name for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_base(path: Path, find: Callable, work: int = WORK_SIZE) -> Base | None:
    """Decode one base, find its regions once (at full size) and keep both with the longer side at
    `work` pixels; None when no face is found."""
    photo = load_image(path)
    try:
        found = find(np.asarray(photo))
    except FaceNotFound:
        return None
    scale = work / max(photo.size)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    regions = {n: _resize_mask(r.mask, size) for n, r in found.regions.items() if r.visible}
    regions = {n: m for n, m in regions.items() if m.sum() >= 16}
    face = _resize_mask(found.skin_mask, size)
    if not regions or not face.any():
        return None
    image = np.asarray(photo.resize(size, Image.Resampling.LANCZOS))
    return Base(path.name, image, regions, face)


def choose_scores(rng: np.random.Generator, severity: str, visible: Sequence[str]) -> tuple[str, Scores] | None:
    """A pattern and true scores of `severity` using only its regions that are visible, or None."""
    priors = PATTERN_PRIORS[severity]
    low, high = CLASS_PRIORS[severity][3]
    for _ in range(_DRAWS):
        pattern = str(rng.choice(list(priors), p=list(priors.values())))
        scores = sample_true_scores(rng, severity)
        for region in REGIONS:
            if region not in PATTERNS[pattern] or region not in visible:
                scores[region] = {"area": 0, "darkness": 0, "homogeneity": 0}
        if low <= masi(scores) <= high:
            return pattern, scores
    return None


@dataclass(frozen=True)
class Case:
    """One image's labels: the pattern, the true scores, three raters and their consensus."""

    pattern: str
    true: Scores
    raters: list[Scores]
    agreed: Consensus
    true_severity: str


def draw_case(rng: np.random.Generator, severity: str, visible: Sequence[str]) -> Case | None:
    """A case whose raters' consensus class is `severity` (so labels stay balanced); its true class
    is `severity` or, in some draws, a neighbour class whose raters landed on `severity`."""
    index = SEVERITIES.index(severity)
    neighbours = [SEVERITIES[j] for j in (index - 1, index + 1)
                  if 0 <= j < len(SEVERITIES) and can_show(SEVERITIES[j], visible)]
    if not can_show(severity, visible):
        return None
    for _ in range(_DRAWS):
        true_class = severity if rng.random() < 0.6 or not neighbours else str(rng.choice(neighbours))
        chosen = choose_scores(rng, true_class, visible)
        if chosen is None:
            continue
        pattern, true = chosen
        raters = [rate(rng, true, k) for k in range(3)]
        agreed = consensus(raters)
        if agreed.severity == severity:
            return Case(pattern, true, raters, agreed, true_class)
    return None


def _crop_box(rng: np.random.Generator, face: np.ndarray, regions: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """(top, left, side) of a square crop inside the photo: around the whole face, or a close-up
    on one region."""
    height, width = face.shape
    rows, cols = np.nonzero(face)
    extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    if rng.random() < CLOSE_UP:
        rows, cols = np.nonzero(regions[str(rng.choice(sorted(regions)))])
        factor = rng.uniform(0.45, 0.9)
    else:
        factor = rng.uniform(*FACE_CROP)
    side = int(max(16, min(height, width, extent * factor)))
    centre_r = (rows.min() + rows.max()) / 2 + rng.uniform(-0.08, 0.08) * side
    centre_c = (cols.min() + cols.max()) / 2 + rng.uniform(-0.08, 0.08) * side
    top = int(np.clip(centre_r - side / 2, 0, height - side))
    left = int(np.clip(centre_c - side / 2, 0, width - side))
    return top, left, side


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized (nearest) to `size` = (width, height)."""
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0


def mirror(base: Base) -> Base:
    """The base mirrored left-right: the patient's right malar region becomes the left one."""
    swap = {"right_malar": "left_malar", "left_malar": "right_malar"}
    regions = {swap.get(n, n): np.ascontiguousarray(m[:, ::-1]) for n, m in base.regions.items()}
    return Base(base.name, np.ascontiguousarray(base.image[:, ::-1]), regions,
                np.ascontiguousarray(base.face[:, ::-1]))


def crop(rng: np.random.Generator, image: np.ndarray, lesion: np.ndarray, face: np.ndarray,
         regions: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop (whole face or close-up) resized to `size`: (image, lesion mask)."""
    top, left, side = _crop_box(rng, face, regions)
    window = (slice(top, top + side), slice(left, left + side))
    pixels = np.asarray(Image.fromarray(image[window]).resize((size, size), Image.Resampling.LANCZOS))
    return pixels, _resize_mask(lesion[window], (size, size))


def relight(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Exposure (gamma), white balance, a directional light gradient and sensor noise."""
    values = image.astype(np.float32) / 255.0
    values = values ** rng.uniform(0.8, 1.25)
    values *= rng.uniform(0.92, 1.08, 3)
    height, width = values.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5)) * 2
    values *= (1 + rng.uniform(0.0, 0.18) * ramp)[..., None]
    values += rng.normal(0, rng.uniform(0.0, 0.015), values.shape)
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def base_splits(n_bases: int) -> list[str]:
    """Splits for `n_bases` bases in a shuffled order: train, then val and test by `SPLIT_SHARES`
    (at least one base each when there are three or more bases)."""
    n_val = max(1, round(SPLIT_SHARES[0] * n_bases)) if n_bases >= 3 else 0
    n_test = max(1, round(SPLIT_SHARES[1] * n_bases)) if n_bases >= 3 else 0
    n_train = n_bases - n_val - n_test
    return ["train"] * n_train + ["val"] * n_val + ["test"] * n_test


def tone_targets(rng: np.random.Generator, classes: Sequence[str]) -> np.ndarray:
    """Target ITA per image, stratified within each class over `ITA_RANGE`: every class gets the
    same spread of skin tones, so tone carries no information about the label by construction."""
    low, high = ITA_RANGE
    labels = np.asarray(classes)
    targets = np.empty(len(labels))
    for severity in SEVERITIES:
        index = np.flatnonzero(labels == severity)
        strata = rng.permutation(len(index)) + rng.uniform(size=len(index))
        targets[index] = low + (high - low) * strata / max(len(index), 1)
    return targets


def _columns() -> list[str]:
    return ["image", "masi", "severity", "patient_id", "split", "true_masi", "true_severity", "base", "pattern",
            "mirrored", "ita_base", "ita_target", "ita", *ITEM_COLUMNS]


def generate(
    base_dir: str | Path,
    out_dir: str | Path,
    n: int = 240,
    size: int = 256,
    seed: int = 0,
    holdout: int = HOLDOUT,
    holdout_list: Sequence[str] | None = None,
    quality: int | None = None,
    find: Callable | None = None,
) -> Path:
    """Write the data set under `out_dir`; returns labels.csv. `find` defaults to
    `melasma.regions.find_regions`; `quality` fixes the JPEG quality (default: drawn per image)."""
    if n < 1:
        raise UserError(f"n must be at least 1 image, got {n}")
    if not 32 <= size <= 1024:
        raise UserError(f"size must be 32-1024 pixels, got {size}")
    if find is None:
        find = find_regions
    source, out = Path(base_dir), Path(out_dir)
    split = split_bases(list_bases(source), holdout, holdout_list)
    work = max(WORK_SIZE, round(size * 1.25))
    bases = [b for b in (load_base(source / name, find, work) for name in split.train) if b is not None]
    if not bases:
        raise BaseError(f"{source}: no training base with a face the region finder can use")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    used = [b.name for b in bases]
    (out / "holdout.txt").write_text("".join(f"{name}\n" for name in split.holdout))
    (out / "bases.json").write_text(json.dumps({
        "source": str(source), "train_bases": used, "holdout": split.holdout,
        "no_face": [name for name in split.train if name not in used],
    }, indent=2) + "\n")

    rng = np.random.default_rng(seed)
    classes = [SEVERITIES[i % 3] for i in rng.permutation(n)]
    targets = tone_targets(rng, classes)
    order = [int(i) for i in rng.permutation(len(bases))]
    splits = dict(zip(order, base_splits(len(bases))))  # base index -> split, in shuffled order
    tones = {b.name: b.tone for b in bases}
    rows = []
    for i, severity in enumerate(classes):
        image_rng = np.random.default_rng([seed, i])
        mirrored = bool(image_rng.random() < 0.5)
        for attempt in range(len(bases)):
            base = bases[order[(i + attempt) % len(bases)]]
            view = mirror(base) if mirrored else base
            case = draw_case(image_rng, severity, list(view.regions))
            if case is not None:
                break
        else:
            raise BaseError(f"no base can show a {severity} case with its visible regions")
        true = case.true
        target = float(targets[i])
        toned = shift_ita(view.image, view.face | skin_mask(view.image), target, reference=view.face)
        painted = paint(image_rng, toned, view.regions, true)
        pixels = scene(image_rng, painted.image, view.face)
        pixels, lesion = crop(image_rng, pixels, painted.lesion, view.face, view.regions, size)
        pixels = camera(image_rng, relight(image_rng, pixels))
        name = f"semi_{i:05d}"
        if quality is None:
            (out / "images" / f"{name}.jpg").write_bytes(jpeg(image_rng, pixels))
        else:
            Image.fromarray(pixels).save(out / "images" / f"{name}.jpg", quality=quality)
        Image.fromarray(lesion.astype(np.uint8) * 255).save(out / "masks" / f"{name}.png")
        row: dict[str, object] = {
            "image": f"images/{name}.jpg", "masi": case.agreed.masi, "severity": case.agreed.severity,
            "patient_id": f"base_{bases.index(base):03d}", "split": splits[bases.index(base)],
            "true_masi": round(masi(true), 10), "true_severity": case.true_severity, "base": base.name,
            "pattern": case.pattern, "mirrored": int(mirrored),
            "ita_base": round(tones[base.name], 2), "ita_target": round(target, 2),
            "ita": round(mean_ita(toned, view.face), 2),
        }
        row.update(item_values(true, case.raters))
        rows.append(row)
    return write_labels(out, _columns(), rows)
