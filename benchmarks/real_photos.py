"""How a checkpoint does on real photos: melasma vs not, where its explanations land, tone baseline.

Usage: python benchmarks/real_photos.py [DIR] [--weights W] [--bases FILE] [--cv CV_DIR] [--json]
                                       [--tone-only] [--record --machine TEXT]

DIR holds `melasma/`, `non-melasma/` and the COCO lesion polygons `_annotations.coco.json` (default:
../shared/data/roboflow-melasma). Photos the checkpoint saw as semi-synthetic training bases are
left out: their names are `train_bases` in W/bases.json (or in --bases FILE, to compare two
checkpoints on the same photos), and so are the photos W itself was trained on (`data.photos` of
its model.json). `--cv CV_DIR` (`folds.json` and `fold_i/` checkpoints, as
`python -m melasma.training.demo_real --cv 5` writes them) scores each photo with the fold model that
did not see it instead: the cross-validated numbers of a checkpoint trained on these photos.
Per checkpoint it measures:

- ROC AUC, melasma vs no melasma, of the probability-weighted severity
  (P(moderate) + 2 P(severe)), beside the AUC of skin tone alone (`melasma.regions.tone.skin_ita`:
  the median ITA of the face's skin, of the photo's skin-coloured pixels when no face is found;
  darker = melasma); photos without a face are scored too, never dropped;
- for LRP (EpsilonPlusFlat), gradient x input and Grad-CAM of the predicted class on each melasma
  photo: (share of the positive relevance on the face that lies inside the lesion polygons) /
  (the polygons' share of the face), the median over photos; 1 is chance, >= 2 the target. The face
  is the skin-coloured area (YCrCb rule) joined with the polygons;
- the share of photos without melasma predicted mild.

`--record` also writes the numbers to `real_photos.json` in W (`melasma.real_photo_check`), which
the Predict tab shows beside every prediction of that checkpoint; `--machine` names where it ran.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from melasma.data.images import load_image  # noqa: E402
from melasma.data.masks import coco_masks  # noqa: E402
from melasma.data.tone import skin_mask  # noqa: E402
from melasma.explain.faithfulness import resize_mask  # noqa: E402
from melasma.inference import Predictor  # noqa: E402
from melasma.real_photo_check import RealPhotoCheck, write_check  # noqa: E402
from melasma.regions.tone import skin_ita, tone_score  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "data" / "roboflow-melasma"
FOLDERS = {"melasma": True, "non-melasma": False}
METHODS = ("lrp", "gxi", "gradcam")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class PhotoResult:
    """One photo: its folder, the prediction, the tone and (melasma photos) localisation ratios."""

    name: str
    melasma: bool
    severity: str
    score: float
    ita: float
    ratios: dict[str, float]


@dataclass(frozen=True)
class Summary:
    """The numbers `--json` prints (keys as issue 19 names them)."""

    images: int
    auc_melasma: float
    lrp_in_polygon_ratio: float
    gxi_in_polygon_ratio: float
    gradcam_in_polygon_ratio: float
    nonmelasma_mild_share: float
    tone_baseline_auc: float


def training_bases(weights: Path, bases_file: Path | None) -> list[str]:
    """Names of the photos used as training bases: `train_bases` of bases.json, or none."""
    path = bases_file if bases_file is not None else weights / "bases.json"
    if not path.is_file():
        if bases_file is not None:
            raise SystemExit(f"error: {path}: no such bases file")
        return []
    return list(json.loads(path.read_text())["train_bases"])


def training_photos(weights: Path) -> list[str]:
    """Names of the real photos the checkpoint was trained on (`data.photos` of its model.json)."""
    path = weights / "model.json"
    data = json.loads(path.read_text()).get("data", {}) if path.is_file() else {}
    photos = data.get("photos", []) if isinstance(data, dict) else []
    return [str(name) for name in photos] if isinstance(photos, list) else []


@dataclass(frozen=True)
class CrossValidation:
    """Fold checkpoints: each photo is scored by the model of the fold that held it out."""

    directory: Path
    folds: dict[str, int]

    @classmethod
    def read(cls, directory: Path) -> CrossValidation:
        path = directory / "folds.json"
        if not path.is_file():
            raise SystemExit(f"error: {path}: missing (train with --cv first)")
        return cls(directory, {str(k): int(v) for k, v in json.loads(path.read_text())["folds"].items()})

    def predictors(self) -> dict[int, Predictor]:
        return {k: Predictor.from_checkpoint(self.directory / f"fold_{k}") for k in sorted(set(self.folds.values()))}


def list_photos(directory: Path, excluded: set[str]) -> list[tuple[Path, bool]]:
    """(path, has melasma) for every photo in melasma/ and non-melasma/ not in `excluded`."""
    photos = []
    for folder, label in FOLDERS.items():
        if not (directory / folder).is_dir():
            raise SystemExit(f"error: {directory / folder}: missing (expected melasma/ and non-melasma/)")
        for path in sorted((directory / folder).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.name not in excluded:
                photos.append((path, label))
    return photos


def polygon_ratio(relevance: np.ndarray, lesion: np.ndarray, face: np.ndarray) -> float:
    """(positive relevance in lesion / positive relevance on the face) / (lesion area / face area)."""
    positive = np.clip(relevance, 0, None) * face
    total = positive.sum()
    if total <= 0 or not lesion.any():
        return math.nan
    return float((positive[lesion].sum() / total) / (lesion.sum() / face.sum()))


def measure_photo(predictor: Predictor, path: Path, melasma: bool, lesion: np.ndarray | None) -> PhotoResult:
    """Predict one photo, measure its tone and, with a lesion mask, each method's polygon ratio."""
    photo = load_image(path)
    pixels = np.asarray(photo)
    prediction = predictor.predict(photo)
    probs = prediction.probabilities
    score = probs.get("moderate", 0.0) + 2 * probs.get("severe", 0.0)
    skin = skin_mask(pixels)  # the face for the polygon ratio: skin-coloured pixels joined with the polygons
    ratios: dict[str, float] = {}
    if lesion is not None:
        for method in METHODS:
            relevance = predictor.explain(photo, method).map
            size = (relevance.shape[1], relevance.shape[0])
            mask = resize_mask(lesion, size)
            face = resize_mask(skin, size) | mask
            ratios[method] = polygon_ratio(relevance, mask, face)
    return PhotoResult(path.name, melasma, prediction.severity, score, skin_ita(pixels), ratios)


def tone_baseline_auc(directory: Path, excluded: set[str]) -> float:
    """ROC AUC, melasma vs not, of skin tone alone (`skin_ita`, darker = melasma); no model."""
    photos = list_photos(directory, excluded)
    tones = [tone_score(skin_ita(np.asarray(load_image(path)))) for path, _ in photos]
    return float(roc_auc_score([label for _, label in photos], tones))


def summarise(results: list[PhotoResult]) -> Summary:
    """AUCs, median polygon ratios and the non-melasma mild share over all results."""
    labels = [r.melasma for r in results]

    def auc(scores: list[float]) -> float:
        return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else math.nan

    def median(method: str) -> float:
        values = [r.ratios[method] for r in results if method in r.ratios and not math.isnan(r.ratios[method])]
        return float(np.median(values)) if values else math.nan

    others = [r for r in results if not r.melasma]
    return Summary(
        images=len(results),
        auc_melasma=auc([r.score for r in results]),
        lrp_in_polygon_ratio=median("lrp"),
        gxi_in_polygon_ratio=median("gxi"),
        gradcam_in_polygon_ratio=median("gradcam"),
        nonmelasma_mild_share=sum(r.severity == "mild" for r in others) / len(others) if others else math.nan,
        tone_baseline_auc=auc([tone_score(r.ita) for r in results]),
    )


def _distribution(results: list[PhotoResult], melasma: bool) -> str:
    chosen = [r.severity for r in results if r.melasma == melasma]
    counts = {s: chosen.count(s) for s in ("mild", "moderate", "severe")}
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def report(summary: Summary, results: list[PhotoResult], weights: Path, excluded: list[str], source: str) -> str:
    """The human-readable table."""
    n_mel = sum(r.melasma for r in results)
    lines = [
        f"weights: {weights}",
        f"photos: {summary.images} ({n_mel} melasma, {summary.images - n_mel} without); "
        f"left out as training bases or photos: {len(excluded)}" + (f" ({source})" if excluded else ""),
        f"{'measure':<44}{'value':>8}",
        f"{'ROC AUC melasma vs not (weighted severity)':<44}{summary.auc_melasma:>8.3f}",
        f"{'ROC AUC of skin tone alone (skin_ita)':<44}{summary.tone_baseline_auc:>8.3f}",
        f"{'LRP in-polygon ratio (median)':<44}{summary.lrp_in_polygon_ratio:>8.2f}",
        f"{'gradient x input in-polygon ratio (median)':<44}{summary.gxi_in_polygon_ratio:>8.2f}",
        f"{'Grad-CAM in-polygon ratio (median)':<44}{summary.gradcam_in_polygon_ratio:>8.2f}",
        f"{'share of non-melasma photos predicted mild':<44}{summary.nonmelasma_mild_share:>8.3f}",
        f"severity on melasma photos: {_distribution(results, True)}",
        f"severity on photos without: {_distribution(results, False)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default=str(DEFAULT_DIR), help=f"default {DEFAULT_DIR}")
    parser.add_argument("--weights", default=str(ROOT / "melasma" / "weights" / "demo"), help="checkpoint folder")
    parser.add_argument("--bases", default=None, help="bases.json whose train_bases are left out "
                                                      "(default: the one beside the weights)")
    parser.add_argument("--cv", default=None, help="folder of fold checkpoints (folds.json): score each photo "
                                                   "with the model that did not see it")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tone-only", action="store_true", help="print only the skin-tone baseline AUC (no model)")
    parser.add_argument("--record", action="store_true", help="write the numbers to W/real_photos.json")
    parser.add_argument("--machine", default=platform.node() or "unnamed machine",
                        help="where this ran, for --record (default: the host name)")
    args = parser.parse_args(argv)

    directory, weights = Path(args.directory), Path(args.weights)
    bases_file = Path(args.bases) if args.bases else weights / "bases.json"
    excluded = training_bases(weights, Path(args.bases) if args.bases else None)
    cv = CrossValidation.read(Path(args.cv)) if args.cv else None
    if cv is None:
        excluded += [name for name in training_photos(weights) if name not in excluded]
    if args.tone_only:
        print(f"ROC AUC of skin tone alone (ITA): {tone_baseline_auc(directory, set(excluded)):.3f}")
        return 0
    photos = list_photos(directory, set(excluded))
    if args.limit is not None:
        photos = [p for label in (True, False) for p in [q for q in photos if q[1] == label][: args.limit]]
    coco = directory / "_annotations.coco.json"
    masks = coco_masks(coco) if coco.is_file() else {}
    if not photos:
        raise SystemExit(f"error: every photo of {directory} trained {weights}: score them with --cv")
    if cv is not None:
        unknown = [path.name for path, _ in photos if path.name not in cv.folds]
        if unknown:
            raise SystemExit(f"error: {unknown[0]} has no fold in {cv.directory / 'folds.json'}")
        by_fold = cv.predictors()
        results = [measure_photo(by_fold[cv.folds[path.name]], path, label,
                                 masks.get(path.name) if label else None) for path, label in photos]
    else:
        predictor = Predictor.from_checkpoint(weights)
        results = [measure_photo(predictor, path, label, masks.get(path.name) if label else None)
                   for path, label in photos]
    summary = summarise(results)
    if args.record:
        source = f"{directory.name}, {len(excluded)} training photos left out" if excluded else directory.name
        if cv is not None:
            source = f"{directory.name}, {len(set(cv.folds.values()))}-fold cross-validated (each photo scored by a model trained without it)"
        check = RealPhotoCheck(**asdict(summary), melasma_images=sum(r.melasma for r in results), source=source,
                               measured=f"{date.today().isoformat()}, {args.machine}")
        print(f"wrote {write_check(weights, check)}", file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        scored = f"cross-validated by {args.cv}" if cv is not None else str(bases_file)
        print(report(summary, results, weights, excluded, scored))
    return 0


if __name__ == "__main__":
    sys.exit(main())
