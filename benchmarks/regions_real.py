"""Face regions and the pigment measure on real photos: faces found, Dice / IoU of the
hyperpigmentation mask against hand-drawn lesion polygons, area correlation, and melasma vs
non-melasma ROC AUC of the image-derived MASI beside the skin-tone-only baseline.

DIR is a folder in the roboflow layout: `melasma/*.jpg`, `non-melasma/*.jpg` and
`_annotations.coco.json` (lesion polygons of the melasma photos). Default: ../shared/data/roboflow-melasma.

    python benchmarks/regions_real.py [DIR] [--json]

Dice and IoU are per melasma photo with a face found (the mask is restricted to that face's skin;
the polygons are coarse outlines, so pixel overlap is a harsh measure). The tone baseline scores a
photo by its median skin ITA alone (darker = melasma): the melasma photos here are mostly darker,
clinical close-ups, the others lighter web portraits, so the margin over it is what counts. For
the same reason the Dice of the trivial mask "all of the face's skin" is printed beside ours.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.data.masks import coco_masks
from melasma.regions import FaceNotFound, find_regions
from melasma.regions.pigment import DEFAULT, PigmentSettings, measure_pigment

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma"
COCO = "_annotations.coco.json"


@dataclass(frozen=True)
class PhotoResult:
    """One photo's outcome (NaN where it does not apply)."""

    name: str
    melasma: bool
    face: bool
    dice: float
    iou: float
    dice_skin: float  # the trivial mask "all the face's skin", for scale
    pigment_share: float  # pigmented pixels / photo pixels
    polygon_share: float  # lesion polygon pixels / photo pixels
    masi: float
    skin_ITA: float
    visible: int  # visible regions


@dataclass(frozen=True)
class RealSummary:
    images: int
    faces_found: int
    dice_mean: float
    iou_mean: float
    area_corr: float
    auc_melasma: float
    tone_baseline_auc: float
    dice_whole_skin: float  # Dice of the trivial all-skin mask: the floor a real detector must beat


def overlap(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two bool masks; both empty counts as 1."""
    both = float((found & truth).sum())
    total = float(found.sum() + truth.sum())
    union = float((found | truth).sum())
    if total == 0:
        return 1.0, 1.0
    return 2 * both / total, both / union


def evaluate_photo(path: Path, melasma: bool, truth: np.ndarray | None, settings: PigmentSettings) -> PhotoResult:
    """Regions + pigment on one photo, compared with its lesion mask when it has one."""
    image = Image.open(path).convert("RGB")
    nan = float("nan")
    polygon_share = float(truth.mean()) if truth is not None else (0.0 if not melasma else nan)
    try:
        regions = find_regions(image)
    except FaceNotFound:
        return PhotoResult(path.name, melasma, False, nan, nan, nan, nan, polygon_share, nan, nan, 0)
    measures = measure_pigment(image, regions, settings)
    pigment = measures.pigment_mask
    dice, iou = overlap(pigment, truth) if truth is not None else (nan, nan)
    dice_skin = overlap(regions.skin_mask, truth)[0] if truth is not None else nan
    return PhotoResult(
        path.name, melasma, True, dice, iou, dice_skin, float(pigment.mean()), polygon_share, measures.masi,
        measures.skin_ITA, len(regions.visible_regions),
    )


def evaluate(folder: Path, settings: PigmentSettings = DEFAULT) -> list[PhotoResult]:
    """Every photo of `folder` (melasma first)."""
    masks = coco_masks(folder / COCO) if (folder / COCO).is_file() else {}
    results = []
    for sub, melasma in (("melasma", True), ("non-melasma", False)):
        for path in sorted((folder / sub).glob("*")):
            if path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                results.append(evaluate_photo(path, melasma, masks.get(path.name), settings))
    return results


def summarise(results: list[PhotoResult]) -> RealSummary:
    """The benchmark's headline numbers."""
    found = [r for r in results if r.face]
    lesions = [r for r in found if r.melasma and not np.isnan(r.dice)]
    labels = [r.melasma for r in found]
    two_classes = len(set(labels)) == 2
    areas = np.array([(r.pigment_share, r.polygon_share) for r in lesions])
    corr = float(np.corrcoef(areas.T)[0, 1]) if len(lesions) > 2 else float("nan")
    return RealSummary(
        images=len(results),
        faces_found=len(found),
        dice_mean=float(np.mean([r.dice for r in lesions])) if lesions else float("nan"),
        iou_mean=float(np.mean([r.iou for r in lesions])) if lesions else float("nan"),
        area_corr=corr,
        auc_melasma=float(roc_auc_score(labels, [r.masi for r in found])) if two_classes else float("nan"),
        tone_baseline_auc=float(roc_auc_score(labels, [-r.skin_ITA for r in found])) if two_classes else float("nan"),
        dice_whole_skin=float(np.mean([r.dice_skin for r in lesions])) if lesions else float("nan"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, help="photo folder (roboflow layout)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the summary")
    args = parser.parse_args(argv)
    if not (args.dir / "melasma").is_dir():
        print(f"error: {args.dir} has no melasma/ folder", file=sys.stderr)
        return 2
    results = evaluate(args.dir)
    summary = summarise(results)
    if args.json:
        print(json.dumps({key: (None if isinstance(v, float) and np.isnan(v) else v)
                          for key, v in asdict(summary).items()}))
        return 0
    columns = ("face", "regions", "dice", "iou", "pigm%", "poly%", "MASI", "ITA")
    print(f"{'photo':44s} {columns[0]:>4s} {columns[1]:>7s} " + " ".join(f"{c:>6s}" for c in columns[2:]))
    for r in results:
        print(f"{r.name[:44]:44s} {'yes' if r.face else 'no':>4s} {r.visible:7d} {r.dice:6.3f} {r.iou:6.3f} "
              f"{100 * r.pigment_share:6.1f} {100 * r.polygon_share:6.1f} {r.masi:6.2f} {r.skin_ITA:6.1f}")
    melasma = sum(r.melasma for r in results)
    print(f"\nphotos: {summary.images} ({melasma} melasma); faces found: {summary.faces_found} "
          f"({sum(r.face and r.melasma for r in results)}/{melasma} melasma, "
          f"{sum(r.face and not r.melasma for r in results)}/{summary.images - melasma} other)")
    print(f"hyperpigmentation mask vs lesion polygons: Dice {summary.dice_mean:.3f}, IoU {summary.iou_mean:.3f} "
          f"(mean over melasma photos with a face); area correlation {summary.area_corr:.3f}")
    print(f"for scale: the trivial mask 'all of the face's skin' has Dice {summary.dice_whole_skin:.3f} "
          "(the polygons are coarse outlines covering most of the face)")
    print(f"melasma vs not, ROC AUC: image-derived MASI {summary.auc_melasma:.3f}; "
          f"skin tone (ITA) alone {summary.tone_baseline_auc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
