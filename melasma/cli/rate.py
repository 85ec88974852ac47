"""`python -m melasma rate`: store one rater's MASI scores for one photo (a second call revises)."""

from __future__ import annotations

import argparse
import json

from annotation import workflow
from melasma.cli.settings_flags import add_store_arguments, open_store
from melasma.errors import UserError

HELP = ("store one rater's 12 MASI scores for a photo: area, darkness, homogeneity for forehead, "
        "right malar, left malar, chin; without --image, print the rater's next photo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rater", required=True, help="a configured rater name")
    parser.add_argument("--image", help="photo id (from ingest); omit to get this rater's next photo")
    parser.add_argument("--scores", help="12 comma-separated integers, e.g. 3,2,2,2,2,1,2,2,1,1,1,1")
    add_store_arguments(parser)


def _parse_scores(text: str) -> list[int]:
    try:
        return [int(value) for value in text.split(",")]
    except ValueError:
        raise UserError(f"--scores must be 12 comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    settings, store = open_store(args)
    flow = workflow.Workflow(store, workflow.RatingPolicy.from_settings(settings))
    if args.image is None:
        record = flow.next_image(args.rater)
        print(json.dumps({"rater": args.rater, "next_image": record.id if record else None,
                          "photo": str(settings.photos_dir / f"{record.id}.jpg") if record else None}))
        return 0
    if not args.scores:
        raise UserError("--scores is required with --image")
    scores = workflow.scores_from_values(_parse_scores(args.scores))
    entry = flow.submit(args.rater, args.image, scores)
    print(json.dumps({"image_id": entry.image_id, "rater": entry.rater, "masi": entry.masi,
                      "mmasi": entry.mmasi, "revision": entry.revision}))
    return 0
