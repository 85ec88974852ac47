"""Arguments shared by the annotation sub-commands: which data folder, which raters, how many."""

from __future__ import annotations

import argparse
import dataclasses

from annotation.store import RatingStore
from melasma.settings import Settings


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --raters, --ratings-per-image (defaults from the environment, like the app)."""
    parser.add_argument("--data-dir", help="data folder (default: MELASMA_DATA_DIR or ./data)")
    parser.add_argument("--raters", help="comma-separated rater names (default: MELASMA_RATERS)")
    parser.add_argument("--ratings-per-image", type=int,
                        help="ratings needed per photo (default: MELASMA_RATINGS_PER_IMAGE or 3)")


def open_store(args: argparse.Namespace) -> tuple[Settings, RatingStore]:
    """The settings (flags over environment) and the data folder's rating store."""
    settings = Settings.from_env()
    changes: dict[str, object] = {}
    if args.data_dir:
        changes["data_dir"] = args.data_dir
    if args.raters:
        changes["raters"] = tuple(name.strip() for name in args.raters.split(",") if name.strip())
    if args.ratings_per_image is not None:
        changes["ratings_per_image"] = args.ratings_per_image
    settings = dataclasses.replace(settings, **changes)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings, RatingStore(settings.data_dir / "annotations.sqlite")
