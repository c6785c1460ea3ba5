"""Wall-clock seconds of ``spectral-sweep demo`` end to end (Ray start, every trial, MLflow).

    python benchmarks/bench_demo.py                  # in a fresh temporary directory
    python benchmarks/bench_demo.py --repeat 3       # three in a row (the performance goal)
    python benchmarks/bench_demo.py --dir /tmp/demo  # keep mlflow.db and the Tune results there

Runs the real command in a subprocess, as a user would, and prints the seconds, the training
share (summed training seconds of every trained run over CPUs x wall: the demo uses
every CPU), and the number of MLflow runs by status. The FLOPs cache is the user's
(``trainables.flops_cache``): the first demo on a machine fills it.
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


def training_seconds(directory: Path, experiments: list[str]) -> float:
    """Summed training seconds (metric ``train_seconds``: the training time each report
    covers) of every trained run of the demo's experiments."""
    from analysis.mlflow_runs import client_for
    from orchestrator.uris import default_tracking_uri

    client = client_for(default_tracking_uri(directory))
    total = 0.0
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            history = client.get_metric_history(run.info.run_id, "train_seconds")
            total += sum(m.value for m in history)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="working directory (default: a fresh temp dir)")
    parser.add_argument("--name", default="demo")
    parser.add_argument("--repeat", type=int, default=1, help="demos in a row, each in a fresh dir")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
            directory = Path(args.dir).resolve() / str(i) if args.dir else Path(tmp)
            directory.mkdir(parents=True, exist_ok=True)
            seconds = run_demo(directory, ["--quiet", "--name", args.name])
            counts = run_counts(directory, args.name)
            training = training_seconds(directory, [args.name, f"{args.name}-estimate"])
        share = training / (cpus * seconds)
        print(
            f"demo {i + 1}: {seconds:.1f} s end to end on {cpus} CPUs; training share "
            f"{share:.2f} ({training:.1f} s of training over {cpus} x {seconds:.1f} s); "
            f"runs {counts}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
