"""`python -m melasma explain`: a relevance heatmap of one photo, overlaid on it, as a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from melasma.cli.arguments import device
from melasma.explain.methods import METHODS

HELP = "explain one photo's prediction (LRP, Grad-CAM or gradient x input): photo, overlay, legend as PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMG", help="the photo to explain")
    parser.add_argument("--out", metavar="PNG", required=True, help="where to write the figure (PNG)")
    parser.add_argument("--method", choices=METHODS, default="lrp", help="default: lrp")
    parser.add_argument(
        "--weights", metavar="RUN/ARCH", default=None,
        help="checkpoint directory (model.safetensors + model.json); default: the demo weights",
    )
    parser.add_argument(
        "--target", default=None, help="class to explain (mild/moderate/severe); default: predicted",
    )
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    # deferred: imports torch; --help stays instant
    from melasma.inference import Predictor, default_checkpoint

    predictor = Predictor.from_checkpoint(args.weights or default_checkpoint(), device=args.device)
    explanation = predictor.explain(args.image, method=args.method, target=args.target)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    explanation.figure().save(out, format="PNG")
    line = {
        "image": args.image,
        "method": explanation.method,
        "target": explanation.target,
        "out": str(out),
        "latency_ms": explanation.latency_ms,
    }
    print(json.dumps(line))
    return 0
