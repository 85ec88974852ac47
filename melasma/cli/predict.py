"""`python -m melasma predict`: severity and class probabilities of photos, one JSON line each (plus
`masi` for a regression-head checkpoint). A checkpoint not shown to grade real photos (its
`real_photos.json`: melasma.real_photo_check) gets one `note:` line on stderr first."""

from __future__ import annotations

import argparse
import json
import sys

from melasma.cli.arguments import device
from melasma.data.images import ImageLoadError
from melasma.real_photo_check import caution

HELP = "predict the severity of photos with a checkpoint (one JSON line per image)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMG", help="photos to grade")
    parser.add_argument(
        "--weights", metavar="RUN/ARCH", default=None,
        help="checkpoint directory (model.safetensors + model.json); default: the demo weights",
    )
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    # deferred: imports torch; --help stays instant
    from melasma.inference import Predictor, default_checkpoint

    predictor = Predictor.from_checkpoint(args.weights or default_checkpoint(), device=args.device)
    check = predictor.real_photo_check
    if check is None or not check.passes:
        print("note: " + caution(check, markdown=False), file=sys.stderr, flush=True)
    failed = 0
    for image in args.images:
        try:
            result = predictor.predict(image)
        except ImageLoadError as error:
            failed += 1
            print(json.dumps({"image": image, "error": str(error)}), flush=True)
            continue
        line = {
            "image": image,
            "severity": result.severity,
            "probabilities": {k: round(v, 4) for k, v in result.probabilities.items()},
            **({"masi": round(result.masi, 2)} if result.masi is not None else {}),
            "latency_ms": result.latency_ms,
        }
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
