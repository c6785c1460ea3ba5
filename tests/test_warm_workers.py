"""Warm workers: Tune reuses a trial's worker process for the next trial (``reuse_actors``), so
torch, timm and the project are imported once per worker. A reused worker must leave nothing
of the previous trial behind: the same configuration gives the same metrics in a reused
worker as in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
FIXED = {
    "model": "dan",
    "backbone": "resnet18",
    "dataset": "synthetic-smooth",
    "input_size": 33,
    "num_classes": 3,
    "batch_size": 4,
    "epochs": 2,
    "lr": 0.01,
    "train_length": 8,
    "eval_length": 4,
    "num_threads": 1,
    "device": "cpu",
}
#: Compared exactly: what training and evaluation produce.
COMPARED = ("miou", "loss", "train_loss", "pixel_acc", "boundary_iou", "r_ce_lrg", "gflops")


def fresh_process_metrics(config: dict[str, Any]) -> dict[str, float]:
    """``run_trial`` in a new Python process: nothing imported or seeded before."""
    code = (
        "import json, sys; from trainables.trial import run_trial\n"
        "result = run_trial(json.loads(sys.argv[1]))\n"
        "print('METRICS ' + json.dumps(result.metrics))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    return dict(json.loads(done.stdout.split("METRICS ", 1)[1]))


def test_a_reused_worker_gives_the_metrics_of_a_fresh_process(
    ray_local: Any, tmp_path: Path
) -> None:
    import orchestrator

    space = {"name": "warm", "fixed": FIXED, "grid": {"lrg": [5, 9, 7], "seed": [1]}}
    # two CPUs per trial on a two-CPU Ray: one worker at a time, so each next trial reuses it
    result = orchestrator.sweep(
        space,
        storage=str(tmp_path / "runs"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        cpus_per_trial=2,
        quiet=True,
    )
    grid = result.result_grid
    assert grid.num_errors == 0 and len(grid) == 3
    pids = {r.metrics["pid"] for r in grid}
    assert len(pids) == 1, f"trials ran in {len(pids)} worker processes, not one reused worker"
    for trial in grid:  # all but the first ran after another trial in the same process
        fresh = fresh_process_metrics(trial.config)
        for key in COMPARED:
            assert trial.metrics[key] == fresh[key], (trial.config["lrg"], key)
