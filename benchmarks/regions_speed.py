"""Time of face regions + pigment measurement per photo of about 1 megapixel, on this machine.

Real photos from the roboflow folder (default ../shared/data/roboflow-melasma), resized to 1000 px
on the long side, the landmark model loaded before timing; prints the median and 90th percentile of
`find_regions`, `measure_pigment` and both together (wall clock), the CPU time of both, and checks
the issue's target (<= 150 ms wall clock on a 2-core CPU).

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

from melasma.regions import FaceNotFound, find_regions, measure_pigment

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "roboflow-melasma"
TARGET_MS = 150.0
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
    find_ms, measure_ms, total_ms, cpu_ms = [], [], [], []
    for image in images:
        for _ in range(args.repeats):
            cpu = time.process_time()
            start = time.perf_counter()
            regions = find_regions(image)
            found = time.perf_counter()
            measure_pigment(image, regions)
            done = time.perf_counter()
            find_ms.append(1000 * (found - start))
            measure_ms.append(1000 * (done - found))
            total_ms.append(1000 * (done - start))
            cpu_ms.append(1000 * (time.process_time() - cpu))
    pixels = np.mean([image.width * image.height for image in images]) / 1e6
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {len(images)} photos "
          f"of {pixels:.2f} MP x {args.repeats} runs")
    for label, values in (("find_regions", find_ms), ("measure_pigment", measure_ms), ("both", total_ms)):
        print(f"{label:16s} median {np.median(values):7.1f} ms   p90 {np.percentile(values, 90):7.1f} ms")
    print(f"{'CPU time, both':16s} median {np.median(cpu_ms):7.1f} ms   (this process, all threads: what a busy "
          f"machine's other load does not inflate; load average {os.getloadavg()[0]:.1f})")
    median = float(np.median(total_ms))
    verdict = "meets" if median <= TARGET_MS else "misses"
    print(f"target <= {TARGET_MS:.0f} ms per 1 MP photo: {verdict} ({median:.1f} ms median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
