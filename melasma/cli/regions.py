"""`python -m melasma regions IMG... [--out DIR] [--lesions model|colour]`: face regions read by the
lesion model (or the colour rules), one JSON line per photo; overlay PNGs in DIR; a photo that fails
is named with its error, and the exit status is 1."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from melasma.data.images import ImageLoadError, decode_image

HELP = "find the four MASI face regions, read their lesions and write outlines (one JSON line per photo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMG", help="photos to analyse")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write <photo stem>_regions.png overlays here")
    parser.add_argument("--lesions", choices=("model", "colour"), default="model",
                        help="how lesions are found: the shipped lesion model (default) or the CIELAB colour "
                             "rules, for comparison")


def run(args: argparse.Namespace) -> int:
    # deferred: imports torch; --help stays instant
    from melasma.lesions import analyse, check_method

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for image in args.images:
        try:
            report = analyse(decode_image(image).image, check_method(args.lesions))
        except ImageLoadError as error:
            failed += 1
            print(json.dumps({"image": image, "error": str(error)}), flush=True)
            continue
        line = {"image": image, "lesions": args.lesions, **report.to_json()}
        if not report.face_found:
            failed += 1
        elif args.out is not None:
            path = args.out / f"{Path(image).stem}_regions.png"
            report.overlay.save(path)
            line["overlay"] = str(path)
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
