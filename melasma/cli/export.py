"""`python -m melasma export`: write the consensus training manifest and the long ratings table."""

from __future__ import annotations

import argparse

from annotation.export import export
from melasma.cli.settings_flags import add_store_arguments, open_store

HELP = "export fully rated photos: manifest.csv (consensus MASI, for train), ratings.csv, images/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="parent folder of the export (default: DATA/exports)")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings, store = open_store(args)
    result = export(store, settings, settings.photos_dir, out_root=args.out)
    print(f"exported {result.images} photos to {result.folder}")
    print(f"manifest: {result.manifest}")
    print(f"ratings: {result.ratings}")
    return 0
