"""`python -m melasma agreement`: the rater-agreement dashboard's numbers as JSON."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from annotation.workflow import consensus_rows
from melasma.cli.settings_flags import add_store_arguments, open_store
from melasma.errors import UserError

if TYPE_CHECKING:
    from annotation.agreement import MachineAgreement
    from annotation.store import RatingStore
    from melasma.settings import Settings

HELP = "rater agreement on fully rated photos: ICC(2,1), ICC(2,k), per-region ICC, kappa, alpha, queue"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plot", metavar="PNG", help="also write the rater-vs-rater scatter plot here")
    parser.add_argument("--machine", action="store_true",
                        help="also compare the image-derived MASI (face-region analysis) with the consensus")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # deferred: loads sklearn and krippendorff; --help stays instant
    from annotation.agreement import agreement_report, rating_table

    settings, store = open_store(args)
    report = agreement_report(store, settings).to_json()
    if args.machine:
        report["machine"] = _machine(store, settings).to_json()
    print(json.dumps(report, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        # deferred: loads matplotlib, after the Agg backend is chosen above
        from annotation.plots import rater_scatter

        rows = consensus_rows(store, settings)
        if len(rows) < 2:
            raise UserError("the plot needs at least 2 fully rated photos")
        table, names = rating_table(rows, settings.ratings_per_image)
        rater_scatter(table, names).savefig(args.plot, dpi=120, bbox_inches="tight")
    return 0


def _machine(store: RatingStore, settings: Settings) -> MachineAgreement:
    """The image-derived MASI as a non-human rater (photos analysed once, then cached)."""
    # deferred: imports torch (the lesion model); --help stays instant
    from annotation.agreement import machine_agreement
    from melasma.lesions.machine_rater import machine_scores

    rows = consensus_rows(store, settings)
    scores = machine_scores([row.image.id for row in rows], settings.photos_dir,
                            settings.cache_dir / "machine_masi.json")
    return machine_agreement(rows, {key: score.masi for key, score in scores.items()})
