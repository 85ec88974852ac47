"""`python -m melasma regions IMG... [--out DIR]`: face regions and pigment measures, one JSON line
per photo; overlay PNGs in DIR; a photo that fails is named with its error, and the exit status is 1."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "find the four MASI face regions, measure pigment and write outlines (one JSON line per photo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMG", help="photos to analyse")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write <photo stem>_regions.png overlays here")


def run(args: argparse.Namespace) -> int:
    from melasma.data.images import ImageLoadError, decode_image
    from melasma.regions.report import analyse

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for image in args.images:
        try:
            report = analyse(decode_image(image).image)
        except ImageLoadError as error:
            failed += 1
            print(json.dumps({"image": image, "error": str(error)}), flush=True)
            continue
        line = {"image": image, **report.to_json()}
        if not report.face_found:
            failed += 1
        elif args.out is not None:
            path = args.out / f"{Path(image).stem}_regions.png"
            report.overlay.save(path)
            line["overlay"] = str(path)
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
