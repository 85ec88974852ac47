"""The lesion model (and the colour rules) on real photos with hand-drawn lesion outlines.

    python benchmarks/regions_real.py [DIR] [--json] [--lesions model|colour] [--weights W]
    python benchmarks/regions_real.py [DIR] --cv 5 [--seed 0] [--healthy] [--json]
    ... [--record FILE --machine TEXT]   (also write the numbers, command, machine and date to FILE,
                                          which tools/benchmarks_doc.py turns into docs/benchmarks.md)

DIR is a folder in the Roboflow layout: `melasma/*.jpg` with `_annotations.coco.json` (lesion
polygons) and `non-melasma/*.jpg` (default: ../shared/data/roboflow-melasma). Without --cv the
shipped lesion model (or W, or the colour rules) reads every photo; the shipped model was trained
on ../shared's photos, so on that folder only `--cv` gives honest numbers: each photo is then read
by a model trained without it (K folds by photo, stratified, fixed by --seed; the encoder's features
are computed once, one decoder is fitted per fold). Keys (melasma.lesions.validate): images,
faces_found, dice_mean, iou_mean, area_corr, auc_melasma (image-derived MASI, melasma vs healthy;
photos with no face scored over their skin), tone_baseline_auc (median skin ITA alone),
dice_whole_skin (the trivial mask "all of the face's skin"), lesion_cell_auc, auc_lesion_share,
auc_darker_half / auc_lighter_half (photos split at the median skin ITA) with the tone baseline's
AUC in each half, and the mean lesion share of healthy and melasma photos.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from melasma.lesions import LesionModel, shipped_model_dir  # noqa: E402
from melasma.lesions.build import THRESHOLD, cells_of, cross_validate  # noqa: E402
from melasma.lesions.net import LesionNet  # noqa: E402
from melasma.lesions.photos import load_photos  # noqa: E402
from melasma.lesions.train import LesionTrainConfig, encode_views  # noqa: E402
from melasma.lesions.validate import (  # noqa: E402
    LesionSummary,
    PhotoScore,
    colour_reading,
    evaluate,
    lesion_reading,
)

DEFAULT_DIR = ROOT.parent / "shared" / "data" / "roboflow-melasma"


def measure(folder: Path, lesions: str, weights: Path | None, cv: int, seed: int,
            healthy: bool) -> tuple[list[PhotoScore], LesionSummary]:
    """Scores and summary of one method on `folder`."""
    photos = load_photos(folder)
    if cv:
        config = LesionTrainConfig(seed=seed, healthy=healthy)
        encoded = encode_views(LesionNet(), photos, config)
        result = cross_validate(photos, encoded, config, cv, report=lambda line: print(line, file=sys.stderr))
        return result.scores, result.summary
    if lesions == "colour":
        readings = [colour_reading(photo) for photo in photos]
        return evaluate(photos, readings, THRESHOLD, cells_of(LesionTrainConfig()))
    model = LesionModel.load(weights or shipped_model_dir())
    readings = [lesion_reading(photo, model.probability(photo.rgb), model.meta.threshold) for photo in photos]
    return evaluate(photos, readings, model.meta.threshold, cells_of(LesionTrainConfig(size=model.meta.size)))


def _number(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else round(value, 4)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces these numbers (what --record writes)."""
    parts = ["python benchmarks/regions_real.py"] + ([str(args.dir)] if args.dir != DEFAULT_DIR else [])
    if args.cv:
        parts += [f"--cv {args.cv}", f"--seed {args.seed}"] + (["--healthy"] if args.healthy else [])
    elif args.lesions == "colour":
        parts.append("--lesions colour")
    elif args.weights:
        parts.append(f"--weights {args.weights}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, help="photo folder (Roboflow layout)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the summary")
    parser.add_argument("--lesions", choices=("model", "colour"), default="model",
                        help="the lesion model (default) or the CIELAB colour rules")
    parser.add_argument("--weights", type=Path, default=None, help="a lesion model folder (default: the shipped one)")
    parser.add_argument("--cv", type=int, default=0, metavar="K", help="cross-validate with K folds by photo")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and the training (default 0)")
    parser.add_argument("--healthy", action="store_true", help="with --cv: also train on the healthy photos")
    parser.add_argument("--record", type=Path, default=None, metavar="FILE",
                        help="also write the summary, command, machine and date to FILE (JSON)")
    parser.add_argument("--machine", default="", help="with --record: where it ran, in words")
    args = parser.parse_args(argv)
    if not (args.dir / "melasma").is_dir():
        print(f"error: {args.dir} has no melasma/ folder", file=sys.stderr)
        return 2
    scores, summary = measure(args.dir, args.lesions, args.weights, args.cv, args.seed, args.healthy)
    trained_on = "outlines + healthy photos" if args.healthy else "outlines only"
    method = f"lesion model, {args.cv}-fold cross-validation, trained on {trained_on}" if args.cv else (
        "colour rules" if args.lesions == "colour" else f"lesion model {args.weights or 'shipped'}")
    numbers = {"method": method, **{key: _number(v) if isinstance(v, float) else v
                                     for key, v in asdict(summary).items()}}
    if args.record is not None:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps({
            "benchmark": "regions_real", "command": _command(args),
            "machine": args.machine, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "result": numbers,
        }, indent=1) + "\n")
    if args.json:
        print(json.dumps(numbers))
        return 0
    print(f"{'photo':44s} {'face':>4s} {'lesion%':>7s} {'outl%':>6s} {'dice':>6s} {'MASI':>6s} {'ITA':>6s}")
    for s in scores:
        print(f"{s.name[:44]:44s} {'yes' if s.face else 'no':>4s} {100 * s.lesion_share:7.1f} "
              f"{100 * s.outline_share:6.1f} {s.dice:6.3f} {s.masi:6.2f} {s.ita:6.1f}")
    print(f"\n{method}: {summary.images} photos, faces found in {summary.faces_found}")
    print(f"lesion skin vs outlines: Dice {summary.dice_mean:.3f} (all face skin: {summary.dice_whole_skin:.3f}), "
          f"IoU {summary.iou_mean:.3f}; lesion vs other skin cells ROC AUC {summary.lesion_cell_auc:.3f}")
    print(f"melasma vs healthy ROC AUC: image-derived MASI {summary.auc_melasma:.3f}, lesion share "
          f"{summary.auc_lesion_share:.3f}; skin tone alone {summary.tone_baseline_auc:.3f}")
    print(f"  darker half {summary.auc_darker_half:.3f} (tone {summary.tone_auc_darker_half:.3f}), lighter half "
          f"{summary.auc_lighter_half:.3f} (tone {summary.tone_auc_lighter_half:.3f})")
    print(f"mean lesion share: healthy {summary.healthy_lesion_share:.3f}, melasma {summary.melasma_lesion_share:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
