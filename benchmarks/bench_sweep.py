"""The project's sweep against plain Ray Tune, on the same slots and the same trial lengths.

    python benchmarks/bench_sweep.py              # 6 short real trials on 2 slots
    python benchmarks/bench_sweep.py --trials 8 --epochs 3

In one process and one Ray: first the project's sweep (``orchestrator.sweep``: real tiny
trials, MLflow in a SQLite file, the driver's writes, reconcile), then plain Tune on function
trials that busy-loop exactly as long as each project trial took (its ``time_total_s``), with
the same slots. For both it prints wall / ideal, where ideal = summed trial work / slots (the
wall time of a perfect scheduler with zero overhead), and for the project its training share:
summed training seconds (``train_seconds``) over slots x wall. Goal (performance issue): the
project's ratio no worse than plain Tune's. One-time setup is outside both walls: Ray is started first,
and the project's new SQLite tracking store is created first (its seconds are printed, and the
ratio with them counted in).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIXED = {
    "model": "dan",
    "backbone": "resnet18",
    "dataset": "synthetic-smooth",
    "input_size": 65,
    "num_classes": 3,
    "batch_size": 4,
    "lr": 0.01,
    "train_length": 32,
    "eval_length": 8,
    "num_threads": 1,
    "device": "cpu",
}


def project_sweep(root: Path, trials: int, epochs: int, slots: int) -> dict[str, Any]:
    """The project's sweep: wall seconds, each trial's work and summed training seconds."""
    import orchestrator
    from analysis.mlflow_runs import client_for

    lrgs = [17, 15, 13, 11, 9, 7, 5, 3][:trials]
    space = {"name": "bench", "fixed": {**FIXED, "epochs": epochs}, "grid": {"lrg": lrgs}}
    uri = f"sqlite:///{root / 'mlflow.db'}"
    began = time.perf_counter()
    client_for(uri).search_experiments()  # a new store's schema: once per tracking file
    store = time.perf_counter() - began
    began = time.perf_counter()
    result = orchestrator.sweep(
        space,
        storage=str(root / "runs"),
        tracking_uri=uri,
        cpus_per_trial=1,
        max_concurrent=slots,
        quiet=True,
    )
    wall = time.perf_counter() - began
    grid = result.result_grid
    work = [float(r.metrics["time_total_s"]) for r in grid]
    training = 0.0
    for r in grid:  # each epoch's training seconds, from Tune's per-report history
        training += float(r.metrics_dataframe["train_seconds"].sum())
    return {
        "wall": wall,
        "store": store,
        "work": work,
        "training": training,
        "errors": grid.num_errors,
    }


def busy(config: dict[str, Any]) -> None:
    """A plain Tune trial: busy-loop ``seconds`` in ``reports`` slices, reporting after each."""
    from ray import tune

    slice_s = config["seconds"] / config["reports"]
    for i in range(config["reports"]):
        end = time.perf_counter() + slice_s
        x = 0
        while time.perf_counter() < end:
            x += 1
        tune.report({"step": i, "x": x})


def plain_tune(root: Path, work: list[float], reports: int, slots: int) -> dict[str, Any]:
    """Plain Tune on busy-loop trials of the given lengths: wall seconds and their work."""
    from ray import tune

    trainable = tune.with_resources(busy, {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space={"seconds": tune.grid_search(work), "reports": reports},
        tune_config=tune.TuneConfig(max_concurrent_trials=slots),
        run_config=tune.RunConfig(name="plain", storage_path=str(root / "plain"), verbose=0),
    )
    began = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - began
    work_done = []
    for i in range(len(grid)):
        metrics = grid[i].metrics
        if metrics is None:
            raise SystemExit("a plain Tune trial reported nothing")
        work_done.append(float(metrics["time_total_s"]))
    return {"wall": wall, "work": work_done}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials (at most 8)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=args.slots, include_dashboard=False, configure_logging=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
            root = Path(tmp)
            ours = project_sweep(root, args.trials, args.epochs, args.slots)
            plain = plain_tune(root, ours["work"], args.epochs, args.slots)
    finally:
        ray.shutdown()
    rows = []
    for label, run in (("spectral-sweep", ours), ("plain Ray Tune (busy loop)", plain)):
        ideal = sum(run["work"]) / args.slots
        rows.append((label, run["wall"], ideal, run["wall"] / ideal))
    print(
        f"{args.trials} trials of {args.epochs} epochs on {args.slots} slots "
        f"({os.cpu_count()} CPUs); ideal = summed trial work / slots"
    )
    print(f"{'sweep':28s} {'wall s':>8s} {'ideal s':>8s} {'wall/ideal':>10s}")
    for label, wall, ideal, ratio in rows:
        print(f"{label:28s} {wall:8.1f} {ideal:8.1f} {ratio:10.2f}")
    new_store = (ours["wall"] + ours["store"]) / (sum(ours["work"]) / args.slots)
    print(
        f"(the tracking store was created before the project's sweep, as Ray was started before "
        f"both: {ours['store']:.1f} s, once per tracking file; counted in, spectral-sweep's "
        f"wall/ideal is {new_store:.2f})"
    )
    share = ours["training"] / (args.slots * ours["wall"])
    print(
        f"spectral-sweep training share: {share:.2f} "
        f"({ours['training']:.1f} s of training over {args.slots} x {ours['wall']:.1f} s)"
    )
    if ours["errors"]:
        print(f"{ours['errors']} project trial(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
