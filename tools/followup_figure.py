"""Write docs/images/followup_timeline.png: one simulated patient's timeline from the synthetic
follow-up set (`synth --visits`), ingested and rated by the simulated raters in a temporary data
folder, and print the cohort table the docs quote.

    python tools/followup_figure.py [--out docs/images/followup_timeline.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.store import RatingStore
from melasma.data.longitudinal import generate
from melasma.followup import cohort_responders, load_patients, outcome
from melasma.followup.demo import load_into_store
from melasma.followup.figures import save_figure, timeline_figure
from melasma.settings import Settings

PATIENTS, VISITS, SEED, SIZE = 20, 6, 3, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/followup_timeline.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        start = time.perf_counter()
        generate(root / "set", patients=PATIENTS, visits=VISITS, seed=SEED, size=SIZE)
        settings = Settings(data_dir=root / "data")
        load_into_store(root / "set", RatingStore.for_settings(settings), settings)
        patients = load_patients(RatingStore.for_settings(settings), settings)
        print(f"{PATIENTS} patients x {VISITS} visits generated, ingested and rated in "
              f"{time.perf_counter() - start:.1f} s")
    outcomes = {pid: outcome(p) for pid, p in patients.items()}
    for window in cohort_responders(outcomes.values()):
        if window.patients:
            print(f"weeks ({window.start_week:g}, {window.end_week:g}]: " + "; ".join(
                f"{name} {window.responders[name]}/{window.patients} [{low:.2f}, {high:.2f}]"
                for name, (low, high) in window.intervals.items()))
    # a responder whose MASI-50 came after the first follow-up visit shows the whole picture
    chosen = next(pid for pid, o in outcomes.items()
                  if o.masi50 and o.masi50 != o.changes[0].visit_date and o.masi75 is None)
    path = save_figure(timeline_figure(patients[chosen], outcomes[chosen]), args.out, dpi=100)
    print(f"wrote {path} (patient {chosen})")


if __name__ == "__main__":
    main()
