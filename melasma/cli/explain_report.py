"""`python -m melasma explain-report`: relevance per model and severity, localisation, faithfulness."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from melasma.cli.arguments import device, positive_int
from melasma.explain import TABLE
from melasma.explain.methods import METHODS, method_list

HELP = "relevance report: the study's mean gradient x input, mass in lesion masks, pointing game, deletion AUC"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", metavar="RUN/ARCH[,RUN/ARCH...]", required=True,
        help="checkpoint directories (model.safetensors + model.json), comma-separated",
    )
    parser.add_argument(
        "--data", metavar="PATH", required=True,
        help="labels.csv / class folders (severity = label) or any folder of photos (severity = predicted)",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for the CSV files and plots")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list (default: {','.join(METHODS)})")
    parser.add_argument("--max-images", type=positive_int, default=None, metavar="N", help="at most N images per model")
    parser.add_argument("--split", default=None, choices=("all", "train", "val", "test"),
                        help="for labelled data: which split, rebuilt with the checkpoint's seed and cut-offs "
                             "(default: val, as the study, on the set the checkpoint trained on; all images of "
                             "another set)")
    parser.add_argument("--force", action="store_true",
                        help="read a named --split of labelled data whose manifest differs from the one the "
                             "checkpoint trained on")
    parser.add_argument("--batch-size", type=positive_int, default=16, metavar="N",
                        help="images explained per batch (default: 16)")
    parser.add_argument("--deletion-steps", type=positive_int, default=16, metavar="K",
                        help="points on the deletion curve (default: 16)")
    parser.add_argument("--baseline", default="mean", choices=("mean", "blur"),
                        help="what deleted patches become (default: the image mean)")
    parser.add_argument("--device", type=device, default="auto", help="torch device (default: auto, the GPU if any)")


def undefined_notes(summary: Any) -> list[str]:
    """Why a summary cell shows `-` (a quantity not defined there), one line per reason present."""
    notes = []
    conserved = sorted({m for m in summary["method"] if TABLE[m].conserved})
    if conserved and summary.loc[summary["method"].isin(conserved), "mean_relevance"].isna().any():
        notes.append(f"-: mean_relevance of {', '.join(conserved)} is not defined: the method conserves relevance, "
                     "so its mean is the same for every image (positive_share differs)")
    if summary["mass_in_mask"].isna().any():
        notes.append("-: mass_in_mask, mask_share and pointing_game need a lesion mask (synthetic masks/ or COCO "
                     "polygons); photos without one have none")
    return notes


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    # deferred: imports torch; --help stays instant
    from melasma.explain_report import explain_report

    bar = tqdm(unit="image", desc="explaining", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    summary = explain_report(
        [w.strip() for w in args.weights.split(",") if w.strip()], args.data, args.out,
        methods=method_list(args.methods),
        max_images=args.max_images, split=args.split, device=args.device, batch_size=args.batch_size,
        deletion_steps=args.deletion_steps, baseline=args.baseline, force=args.force, progress=progress,
        estimate=lambda seconds, total: bar.write(f"{total} images: about {seconds:.0f} s", file=sys.stderr),
        note=lambda text: bar.write(f"note: {text}", file=sys.stderr),
    )
    bar.close()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.round(4).to_string(index=False, na_rep="-"))
    for line in undefined_notes(summary):
        print(line)
    print(f"wrote per_image.csv, summary.csv, study_table2.csv and plots to {args.out}")
    return 0
