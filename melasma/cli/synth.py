"""`python -m melasma synth`: write a labelled synthetic demo data set."""

from __future__ import annotations

import argparse

from melasma.cli.arguments import non_negative_int, positive_int, seed
from melasma.errors import UserError

HELP = "generate synthetic face photos with known MASI scores from three simulated raters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (images/, masks/, labels.csv)")
    parser.add_argument("-n", "--n", type=positive_int, default=90, help="number of images (default 90)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=positive_int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--unbalanced", action="store_true",
                        help="sample classes 50/35/15 %% instead of balanced")
    parser.add_argument("--base-photos", default=None,
                        help="semi-synthetic: paint melasma onto the real face photos in this folder "
                             "(photos without melasma only)")
    parser.add_argument("--holdout", type=non_negative_int, default=17,
                        help="with --base-photos: bases held out for evaluation (default 17)")
    parser.add_argument("--holdout-list", default=None,
                        help="with --base-photos: file of base names to hold out (one a line)")
    parser.add_argument("--visits", type=positive_int, default=None,
                        help="follow-up set: each simulated patient seen at this many visits (>= 2) with a "
                             "known treatment effect (see docs/followup.md)")
    parser.add_argument("--patients", type=positive_int, default=12,
                        help="with --visits: number of simulated patients (default 12)")
    parser.add_argument("--data-dir", default=None,
                        help="with --visits: also ingest the set into this data folder, rated by the "
                             "simulated raters (use a folder of its own: a store holding real photos is "
                             "refused)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a data set already in --out, or add synthetic photos to a data "
                             "folder that holds real ones")


def refuse_overwrite(out: str, force: bool) -> None:
    """UserError when `out` already holds a data set (say, the running app's demo set) and not `force`."""
    from pathlib import Path

    labels = Path(out) / "labels.csv"
    if labels.is_file() and not force:
        raise UserError(f"{labels} exists: {out} already holds a data set (perhaps the app's demo set); "
                         "choose another --out or pass --force to overwrite it")


def run(args: argparse.Namespace) -> int:
    import time

    refuse_overwrite(args.out, args.force)
    if args.base_photos:
        from melasma.data.semisynthetic.cli import run_semisynthetic

        return run_semisynthetic(args)
    if args.visits is not None:
        from melasma.followup.demo import run_longitudinal

        return run_longitudinal(args)

    import pandas as pd

    from melasma.data.synthetic import generate
    from melasma.masi import SEVERITIES

    start = time.perf_counter()
    labels = generate(args.out, n=args.n, seed=args.seed, size=args.size, balanced=not args.unbalanced)
    elapsed = time.perf_counter() - start
    table = pd.read_csv(labels)
    counts = table["severity"].value_counts().reindex(list(SEVERITIES), fill_value=0)
    moved = int((table["severity"] != table["true_severity"]).sum())
    print(f"wrote {len(table)} images ({args.size} px) for {table['patient_id'].nunique()} patients "
          f"in {elapsed:.1f} s")
    print("classes (rater consensus): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"consensus class differs from the true class for {moved} images ({moved / len(table):.0%})")
    print(f"labels: {labels}")
    return 0
