"""Time of face regions + the lesion model's map and reading per photo of about 1 megapixel.

Real photos from the roboflow folder (default ../shared/data/roboflow-melasma), resized to 1000 px
on the long side, the landmark and lesion models loaded before timing; prints the median and 90th
percentile of `find_regions`, the lesion map (`LesionModel.probability`), its reading
(`measure_lesions`) and all together (wall clock), the CPU time, the colour rules'
`measure_pigment` on the same photos for comparison (ratio of the two pipelines), and checks the
target (lesion map plus regions <= 200 ms wall clock on a 2-core CPU).

    python benchmarks/regions_speed.py [DIR] [--photos 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from melasma.lesions import shipped_model
from melasma.regions import FaceNotFound, find_regions, measure_pigment
from melasma.regions.lesion_measure import measure_lesions

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma"
TARGET_MS = 200.0
LONG_SIDE = 1000


def photos(folder: Path, count: int) -> list[Image.Image]:
    """Up to `count` frontal-enough photos with a face, resized to `LONG_SIDE` px."""
    chosen = []
    for path in sorted(folder.glob("*/*.jpg")):
        image = Image.open(path).convert("RGB")
        scale = LONG_SIDE / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        try:
            find_regions(image)
        except FaceNotFound:
            continue
        chosen.append(image)
        if len(chosen) == count:
            break
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    images = photos(args.dir, args.photos)
    if not images:
        print(f"error: no photo with a face under {args.dir}", file=sys.stderr)
        return 2
    model = shipped_model()
    steps: dict[str, list[float]] = {"find_regions": [], "lesion map": [], "measure_lesions": [], "all": [],
                                     "measure_pigment (colour)": []}
    cpu_ms = []
    for image in images:
        for _ in range(args.repeats):
            cpu = time.process_time()
            start = time.perf_counter()
            regions = find_regions(image)
            found = time.perf_counter()
            probability = model.probability(image)
            mapped = time.perf_counter()
            measure_lesions(image, regions, probability, model.meta.threshold)
            done = time.perf_counter()
            cpu_ms.append(1000 * (time.process_time() - cpu))
            measure_pigment(image, regions)
            colour = time.perf_counter()
            for label, begin, end in (("find_regions", start, found), ("lesion map", found, mapped),
                                      ("measure_lesions", mapped, done), ("all", start, done),
                                      ("measure_pigment (colour)", done, colour)):
                steps[label].append(1000 * (end - begin))
    pixels = np.mean([image.width * image.height for image in images]) / 1e6
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {len(images)} photos "
          f"of {pixels:.2f} MP x {args.repeats} runs")
    for label, values in steps.items():
        print(f"{label:26s} median {np.median(values):7.1f} ms   p90 {np.percentile(values, 90):7.1f} ms")
    print(f"{'CPU time, all':26s} median {np.median(cpu_ms):7.1f} ms   (this process, all threads: what a busy "
          f"machine's other load does not inflate; load average {os.getloadavg()[0]:.1f})")
    colour_pipeline = np.median(steps["find_regions"]) + np.median(steps["measure_pigment (colour)"])
    median = float(np.median(steps["all"]))
    print(f"lesion-model pipeline / colour pipeline: {median / colour_pipeline:.2f}x")
    verdict = "meets" if median <= TARGET_MS else "misses"
    print(f"target <= {TARGET_MS:.0f} ms per 1 MP photo: {verdict} ({median:.1f} ms median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
