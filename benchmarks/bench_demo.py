"""Wall-clock seconds of ``spectral-sweep demo`` end to end (Ray start, every trial, MLflow).

    python benchmarks/bench_demo.py                  # in a fresh temporary directory
    python benchmarks/bench_demo.py --dir /tmp/demo  # keep mlflow.db and the Tune results there

Runs the real command in a subprocess, as a user would, and prints the seconds, the number
of MLflow runs by status, and the machine's CPU count (the demo uses every CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(directory: Path, extra: list[str]) -> float:
    """Seconds ``spectral-sweep demo --dir directory`` takes; raises if it fails."""
    command = [sys.executable, "-m", "orchestrator.cli", "demo", "--dir", str(directory), *extra]
    began = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(f"demo failed with exit code {completed.returncode}")
    return seconds


def run_counts(directory: Path, experiment: str) -> dict[str, int]:
    """MLflow runs of the demo experiment by status."""
    from analysis.mlflow_runs import runs_frame
    from orchestrator.uris import default_tracking_uri

    frame = runs_frame(default_tracking_uri(directory), experiment)
    return {str(k): int(v) for k, v in frame["status"].value_counts().items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="working directory (default: a fresh temp dir)")
    parser.add_argument("--name", default="demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        directory = Path(args.dir).resolve() if args.dir else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        seconds = run_demo(directory, ["--quiet", "--name", args.name])
        counts = run_counts(directory, args.name)
    print(f"demo end to end: {seconds:.1f} s on {os.cpu_count()} CPUs; runs {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
