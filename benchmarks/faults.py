"""The fault suite at a larger size, as a table: scenario, expected, observed, runs lost (goal 0),
steps duplicated (goal 0).

    python benchmarks/faults.py             # every scenario (about 10 minutes on 2 CPUs)
    python benchmarks/faults.py --quick     # the CI sizes (about 5 minutes)

Each scenario runs real ``spectral-sweep`` drivers on a real local Ray against a real MLflow
store (a SQLite file, or an ``mlflow server`` on 127.0.0.1) in a temporary folder, and checks
the MLflow record against Tune's own per-trial results (``tests/fault_scenarios.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fault_scenarios as faults

COLUMNS = ("scenario", "expected", "observed", "runs lost", "steps duplicated", "seconds")


def scenarios(quick: bool) -> list[tuple[str, Callable[[Path], faults.Observed]]]:
    """(name, scenario at this size)."""
    trials, epochs = (2, 3) if quick else (3, 6)
    return [
        ("worker", lambda r: faults.worker_killed(r, trials=trials, epochs=epochs)),
        ("driver", lambda r: faults.driver_killed(r, kills=3, trials=trials, epochs=epochs + 1)),
        ("pending", lambda r: faults.interrupted(r, pending=True, epochs=epochs)),
        ("running", lambda r: faults.interrupted(r, pending=False, epochs=epochs)),
        ("sigterm", lambda r: faults.terminated(r, epochs=epochs)),
        ("failed", lambda r: faults.failed_then_resumed(r, trials=trials, epochs=epochs)),
        ("outage", lambda r: faults.store_outage(r, outage=15.0 if quick else 40.0, epochs=epochs)),
        ("down", lambda r: faults.store_down_at_the_end(r, epochs=epochs)),
        ("stores", lambda r: faults.two_new_stores(r, rounds=3 if quick else 6)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI sizes")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run")
    args = parser.parse_args()
    rows = []
    for name, run in scenarios(args.quick):
        if args.only and name not in args.only:
            continue
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"fault-{name}-") as tmp:
            try:
                observed = run(Path(tmp))
                row = observed.row()
            except Exception as err:  # one scenario's failure must not hide the others
                row = {"scenario": name, "expected": "-", "observed": f"error: {err}"[:80]}
                row |= {"runs lost": "?", "steps duplicated": "?"}
        row["seconds"] = f"{time.monotonic() - began:.0f}"
        rows.append(row)
        print(" | ".join(str(row[c]) for c in COLUMNS), flush=True)
    print()
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    clean = all(r["runs lost"] == 0 and r["steps duplicated"] == 0 for r in rows)
    print(f"\n{'every scenario: 0 lost, 0 duplicated' if clean else 'LOSS OR DUPLICATES'}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
