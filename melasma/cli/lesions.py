"""`python -m melasma lesions train --data DIR --out DIR [--cv 5]`: train the lesion model.

DIR is a folder in the Roboflow layout (`melasma/*.jpg` with `_annotations.coco.json` lesion
outlines, and `non-melasma/*.jpg`). Progress goes to stderr; one JSON object with what was written
(and the cross-validated numbers with --cv) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from melasma.cli.arguments import positive_int, seed
from melasma.jsonable import jsonable

HELP = "train the lesion model on photos with lesion outlines (the shipped one: see its model card)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train on a folder of outlined photos and write the model",
                           description="train on a folder of outlined photos and write the model")
    train.add_argument("--data", required=True, type=Path,
                       help="folder with melasma/, non-melasma/ and _annotations.coco.json")
    train.add_argument("--out", required=True, type=Path, help="folder to write model.safetensors and model.json")
    train.add_argument("--epochs", type=positive_int, default=60, help="decoder epochs (default 60)")
    train.add_argument("--views", type=positive_int, default=8,
                       help="views per photo: the plain one and augmented ones (default 8)")
    train.add_argument("--size", type=positive_int, default=448, help="input side in px, a multiple of 32 "
                                                                      "(default 448)")
    train.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    train.add_argument("--healthy", action="store_true",
                       help="also train on the photos without melasma, as lesion-free")
    train.add_argument("--cv", type=positive_int, default=0, metavar="K",
                       help="also cross-validate with K folds by photo and record the numbers (e.g. 5)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    # deferred: imports torch; --help stays instant
    from melasma.lesions.build import build_lesion_model
    from melasma.lesions.train import LesionTrainConfig

    config = LesionTrainConfig(size=args.size, views=args.views, epochs=args.epochs, seed=args.seed,
                               healthy=args.healthy)
    model, validation = build_lesion_model(args.data, args.out, config, cv=args.cv,
                                           report=lambda line: print(line, file=sys.stderr, flush=True))
    summary = {"out": str(args.out), "training": model.meta.training}
    if validation is not None:
        summary["cross_validated"] = asdict(validation.summary)
    print(json.dumps(jsonable(summary)))
    return 0
