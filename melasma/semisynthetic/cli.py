"""`python -m melasma synth --base-photos DIR ...`: write and summarise a semi-synthetic set."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from melasma.masi import SEVERITIES
from melasma.semisynthetic.generate import generate


def run_semisynthetic(args: argparse.Namespace) -> int:
    """Generate the set the synth flags describe and print what was written and which bases."""
    import pandas as pd

    holdout_list = None
    if args.holdout_list:
        text = Path(args.holdout_list).read_text()
        holdout_list = [line.strip() for line in text.splitlines() if line.strip()]
    start = time.perf_counter()
    labels = generate(args.base_photos, args.out, n=args.n, size=args.size, seed=args.seed,
                      holdout=args.holdout, holdout_list=holdout_list)
    elapsed = time.perf_counter() - start
    table = pd.read_csv(labels)
    bases = json.loads((labels.parent / "bases.json").read_text())
    counts = table["severity"].value_counts().reindex(list(SEVERITIES), fill_value=0)
    moved = int((table["severity"] != table["true_severity"]).sum())
    print(f"wrote {len(table)} semi-synthetic images ({args.size} px) from {len(bases['train_bases'])} "
          f"bases in {elapsed:.1f} s")
    print(f"held out {len(bases['holdout'])} bases (holdout.txt, bases.json); "
          f"no face found in {len(bases['no_face'])}")
    print("classes (rater consensus): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"consensus class differs from the true class for {moved} images ({moved / len(table):.0%})")
    print("patterns: " + ", ".join(f"{k} {v}" for k, v in table["pattern"].value_counts().items()))
    print(f"correlation of skin tone (ITA) with true MASI: {table['ita'].corr(table['true_masi']):+.3f}")
    print(f"labels: {labels}")
    return 0
