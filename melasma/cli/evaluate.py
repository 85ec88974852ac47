"""`python -m melasma evaluate`: the study's metrics of a saved checkpoint on a data set."""

from __future__ import annotations

import argparse

from melasma.cli.arguments import device, non_negative_int, positive_int
from melasma.jsonable import jsonable

HELP = "evaluate a checkpoint (RUN/<arch>) on a data set's test split with 95% bootstrap CIs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="checkpoint folder (model.safetensors + model.json)")
    parser.add_argument("--data", required=True, help="manifest CSV, or a folder with labels.csv or class folders")
    parser.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                        help="which images (default test: re-derived with the training seed)")
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache folder")
    parser.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--out", default=None, help="also write the metrics (and predictions) as JSON here")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    # deferred: imports torch; --help stays instant
    from melasma.training.evaluate import evaluate_checkpoint, format_table

    result = evaluate_checkpoint(args.weights, args.data, split=args.split, device=args.device,
                                 batch_size=args.batch_size, cache_dir=args.cache_dir, bootstrap=args.bootstrap)
    print(format_table(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(jsonable(result.to_json()), indent=2, allow_nan=False) + "\n")
        print(f"wrote {out}")
    return 0
