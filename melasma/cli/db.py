"""`python -m melasma db migrate --from URL --to URL`: copy a rater store to another database."""

from __future__ import annotations

import argparse
import sys

from annotation.db.migrate import migrate

HELP = "rater-store database tools: migrate (copy an SQLite store to PostgreSQL, verified by counts)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate", help="copy every image, rating, audit row and adjudication into an empty database",
        description="Copy a rating store into an empty database in one transaction, verified by row "
                    "counts. Photos stay in the data folder. Example: --from sqlite:///data/annotations.sqlite "
                    "--to postgresql://user@host/melasma",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="URL",
                         help="source store: sqlite:///PATH (or a path) or postgresql://...")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL",
                         help="target store (must be empty): postgresql://... or sqlite:///PATH")


def run(args: argparse.Namespace) -> int:
    report = migrate(args.source, args.target)
    width = max(len(c.table) for c in report.counts)
    print(f"copied {report.source} -> {report.target}")
    print(f"{'table'.ljust(width)}  source  target")
    for count in report.counts:
        print(f"{count.table.ljust(width)}  {count.source:6d}  {count.target:6d}")
    print(f"verified: {report.rows} rows, every table's count matches")
    if report.skipped:
        print(f"not copied (not part of the rater store): {', '.join(report.skipped)}", file=sys.stderr)
    return 0
