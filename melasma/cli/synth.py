"""`python -m melasma synth`: write a labelled synthetic demo data set."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from melasma.cli.arguments import non_negative_int, positive_int, seed
from melasma.cli.settings_flags import open_store
from melasma.data import longitudinal, synthetic
from melasma.data.synthetic_marks import refuse_mixing
from melasma.errors import UserError
from melasma.followup.demo import SIMULATED_RATERS, load_into_store
from melasma.masi import SEVERITIES
from melasma.semisynthetic.cli import run_semisynthetic

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
    labels = Path(out) / "labels.csv"
    if labels.is_file() and not force:
        raise UserError(f"{labels} exists: {out} already holds a data set (perhaps the app's demo set); "
                         "choose another --out or pass --force to overwrite it")


def run_longitudinal(args: argparse.Namespace) -> int:
    """`synth --visits N [--patients P] [--data-dir DIR]`: write the follow-up set, optionally load it
    (refused, before anything is written, into a data folder whose store holds real photos, unless --force)."""
    if args.data_dir is not None:
        settings, store = open_store(args)
        refuse_mixing(settings.layout, [image.id for image in store.images()], force=args.force)
    start = time.perf_counter()
    manifest = longitudinal.generate(args.out, patients=args.patients, visits=args.visits, seed=args.seed,
                                     size=args.size)
    print(f"wrote {args.patients * args.visits} photos ({args.size} px) of {args.patients} patients x "
          f"{args.visits} visits in {time.perf_counter() - start:.1f} s")
    print(f"manifest: {manifest}")
    if args.data_dir is not None:
        summary = load_into_store(manifest.parent, store, settings)
        print(f"ingested into {settings.data_dir}: {len(summary.added)} added, {len(summary.duplicates)} "
              f"duplicates, {len(summary.errors)} refused; rated by {', '.join(settings.raters[:SIMULATED_RATERS])}")
    return 0


def run(args: argparse.Namespace) -> int:
    refuse_overwrite(args.out, args.force)
    if args.base_photos:
        return run_semisynthetic(args)
    if args.visits is not None:
        return run_longitudinal(args)
    start = time.perf_counter()
    labels = synthetic.generate(args.out, n=args.n, seed=args.seed, size=args.size, balanced=not args.unbalanced)
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
