"""Flags laid over the environment to make `Settings`, shared by `serve` and the annotation commands."""

from __future__ import annotations

import argparse
import os

from annotation.store import RatingStore
from melasma.cli.arguments import positive_int
from melasma.errors import UserError
from melasma.settings import Settings

#: flag -> the environment variable it overrides
FLAG_ENV = {
    "data_dir": "MELASMA_DATA_DIR", "raters": "MELASMA_RATERS", "auth": "MELASMA_AUTH",
    "ratings_per_image": "MELASMA_RATINGS_PER_IMAGE", "database_url": "MELASMA_DATABASE_URL",
    "examples": "MELASMA_EXAMPLES_DIR", "local_mode": "MELASMA_LOCAL_MODE",
}


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment with the flags that were given laid over it."""
    merged = dict(os.environ if env is None else env)
    for attr, variable in FLAG_ENV.items():
        value = getattr(args, attr, None)
        if value is not None:
            merged[variable] = str(value)
    return Settings.from_env(merged)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --raters, --ratings-per-image for the annotation commands (defaults as the app's)."""
    parser.add_argument("--data-dir", help="data folder (default: MELASMA_DATA_DIR or ./data)")
    parser.add_argument("--raters", help="comma-separated rater names (default: MELASMA_RATERS)")
    parser.add_argument("--ratings-per-image", type=positive_int,
                        help="ratings needed per photo (default: MELASMA_RATINGS_PER_IMAGE or 3)")
    parser.add_argument("--database-url", help="rater store: postgresql://... (default: MELASMA_DATABASE_URL, "
                        "else annotations.sqlite in the data folder)")


def open_store(args: argparse.Namespace) -> tuple[Settings, RatingStore]:
    """The settings (flags over environment) and the data folder's rating store."""
    settings = settings_from_args(args)
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise UserError(f"data folder {settings.data_dir} is a file, not a folder")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings, RatingStore.for_settings(settings)
