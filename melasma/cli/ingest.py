"""`python -m melasma ingest`: add photos and zips of photos to the rating store."""

from __future__ import annotations

import argparse
import json
import sys

from annotation.ingest import ingest
from melasma.cli.settings_flags import add_store_arguments, open_store

HELP = ("add photos (or zips of photos) to the data folder for rating; metadata is stripped; "
        "one line per file on stderr (added, duplicate, refused and why), a JSON summary on stdout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="photos and .zip archives of photos")
    parser.add_argument("--patient-id", help="patient id for every photo of this call")
    parser.add_argument("--visit-date", help="visit date YYYY-MM-DD for every photo of this call")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings, store = open_store(args)
    summary = ingest(
        store, settings.photos_dir, args.files, patient_id=args.patient_id, visit_date=args.visit_date,
        max_bytes=settings.max_upload_mb * 1024 * 1024,
        max_batch_pixels=settings.max_upload_megapixels * 1_000_000,
    )
    for outcome in summary.files:
        print(outcome.line(), file=sys.stderr)
    print(json.dumps(summary.as_dict()))
    return 1 if summary.errors else 0
