"""`python -m melasma visits-ingest`: add a cohort's visit photos from a CSV manifest or a named folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from annotation.visit_manifest import entries_from_folder, ingest_visits, read_manifest
from melasma.cli.settings_flags import add_store_arguments, open_store

HELP = ("add visit photos with patient id and visit date from a CSV manifest (image, patient_id, "
        "visit_date[, treatment, notes]) or a folder of <patient>_<YYYY-MM-DD>[_...].jpg files; every "
        "problem is listed before anything is stored")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV manifest; image paths relative to its folder")
    source.add_argument("--folder", help="folder of photos named <patient>_<YYYY-MM-DD>[_anything].<ext>")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest) if args.manifest else entries_from_folder(args.folder)
    settings, store = open_store(args)
    summary = ingest_visits(
        store, settings.photos_dir, entries, max_bytes=settings.max_upload_mb * 1024 * 1024,
        max_batch_pixels=settings.max_upload_megapixels * 1_000_000,
        source=Path(args.manifest or args.folder).name,
    )
    for outcome in summary.files:
        print(outcome.line(), file=sys.stderr)
    print(json.dumps(summary.as_dict()))
    return 1 if summary.errors else 0
