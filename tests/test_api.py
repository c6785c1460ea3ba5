"""The Python API as a user calls it: the README's block run as written, restore after a real
Ctrl-C, the model registry, and the checks the API shares with the CLI.

Each sweep runs in its own process (a real local Ray started by the API, a real SQLite store);
what the API reports is checked against sources it does not compute: Tune's own results on
disk, the MLflow store read with MLflow's client, the network rebuilt from its checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fault_scenarios import Driver, Sweep, finish, kill_group, wait_for

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- tested: tests/test_api.py -->"


def readme_block() -> str:
    """The Python block right after the README's marker."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None, "no python block after the README's marker"
    return match.group(1)


def run_python(code: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, text=True, capture_output=True,
        timeout=timeout,
    )  # fmt: skip


#: Appended to the README block: what the test compares, as one JSON line.
CHECKS = textwrap.dedent(
    """
    import json, glob, mlflow, torch
    from orchestrator.model_logging import trial_network
    grid = result.result_grid
    tune_rows = [
        {"model": r.config["model"], "lrg": r.config["lrg"], "fpi": r.metrics["fpi"],
         "gflops": r.metrics["gflops"], "miou": r.metrics["miou"], "path": r.path}
        for r in grid
    ]
    optimal = result.optimal_lrg()[["model", "lrg"]].to_dict("records")
    drops = result.analysis().drops
    est = result.estimator()
    client = mlflow.MlflowClient("sqlite:///mlflow.db")
    runs = client.search_runs([result.experiment.experiment_id])
    # a logged model against the network rebuilt from its trial's last checkpoint
    trial = next(r for r in runs if r.data.tags.get("spectral_sweep.role") == "trial")
    path = next(t["path"] for t in tune_rows if t["path"].endswith(
        trial.data.tags["spectral_sweep.trial_id"]))
    checkpoint = sorted(glob.glob(path + "/checkpoint_*"))[-1]
    network, _ = trial_network(checkpoint)
    loaded = mlflow.pytorch.load_model(f"runs:/{trial.info.run_id}/model", dst_path=".")
    x = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        same = bool(torch.allclose(network(x), loaded.eval()(x)))
    print("CHECKS " + json.dumps({
        "errors": grid.num_errors, "tune": tune_rows, "optimal": optimal,
        "slope": est.slope, "intercept": est.intercept, "r_ce_max": est.r_ce_max,
        "drops": drops[["r_ce", "drop"]].to_dict("records"),
        "runs": [{"name": r.info.run_name, "status": r.info.status, "tags": r.data.tags,
                  "metrics": sorted(r.data.metrics), "models": len(r.outputs.model_outputs)
                  if r.outputs else 0} for r in runs],
        "logged_models": len(client.search_logged_models([result.experiment.experiment_id])),
        "same_output": same,
    }))
    """
)


@pytest.mark.slow
@pytest.mark.ray
def test_readme_python_api_runs_as_written(tmp_path: Path) -> None:
    done = run_python(readme_block() + CHECKS, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    checks = json.loads(out.split("CHECKS ", 1)[1])
    assert checks["errors"] == 0 and len(checks["tune"]) == 6
    assert "6 trials; least FPI:" in out
    # the optimal LRG per model from Tune's own results (not MLflow): least GFLOPs / mIoU
    by_model: dict[str, dict[str, float]] = {}
    for row in checks["tune"]:
        fpi = row["gflops"] / row["miou"]
        assert fpi == pytest.approx(row["fpi"], rel=1e-6)
        if row["model"] not in by_model or fpi < by_model[row["model"]]["fpi"]:
            by_model[row["model"]] = {"fpi": fpi, "lrg": row["lrg"]}
    assert {r["model"]: r["lrg"] for r in checks["optimal"]} == {
        m: v["lrg"] for m, v in by_model.items()
    }
    # the estimator re-fitted by hand: least squares of the fitted drops on R_ce
    points = [(d["r_ce"], d["drop"]) for d in checks["drops"] if d["r_ce"] < checks["r_ce_max"]]
    slope, intercept = np.polyfit(*zip(*points, strict=True), 1)
    assert checks["slope"] == pytest.approx(slope, rel=1e-6, abs=1e-9)
    assert checks["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-9)
    assert "recommended LRG:" in out and "my_unet" in out
    # MLflow: one parent run, six named trial runs nested, each with its model and system metrics
    runs = checks["runs"]
    parents = [r for r in runs if r["tags"]["spectral_sweep.role"] == "sweep"]
    trials = [r for r in runs if r["tags"]["spectral_sweep.role"] == "trial"]
    assert len(parents) == 1 and len(trials) == 6
    assert {r["name"] for r in trials} >= {"my_unet-resnet18-synthetic-smooth-lrg5-p0"}
    assert all(r["status"] == "FINISHED" and r["models"] == 1 for r in trials)
    assert all("system/cpu_utilization_percentage" in r["metrics"] for r in trials)
    assert checks["logged_models"] == 6 and checks["same_output"]


#: An API driver: sweep the space file, print the counts.
DRIVER = """
import orchestrator, sys
result = orchestrator.sweep(sys.argv[1], storage=sys.argv[2], tracking_uri=sys.argv[3],
                            max_concurrent=1, quiet=True)
print("SWEEP", result.finished, result.interrupted)
"""
RESTORE = """
import orchestrator, sys
result = orchestrator.restore(sys.argv[1], storage=sys.argv[2], quiet=True)
print("RESTORED", result.finished, result.interrupted, len(result.result_grid))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_restore_continues_a_sweep_interrupted_by_ctrl_c(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, "api-restore", trials=3, epochs=3)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "driver.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(sweep.space), str(sweep.storage), sweep.uri],
            cwd=tmp_path, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
    driver = Driver(process, log)
    wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
    kill_group(driver, signal.SIGINT)
    assert finish(driver) == 0
    first = re.search(r"SWEEP (\d+) (\w+)", driver.output())
    assert first is not None and first.group(2) == "True", driver.output()[-2000:]
    assert int(first.group(1)) < 3
    done = subprocess.run(
        [sys.executable, "-c", RESTORE, sweep.name, str(sweep.storage)],
        cwd=tmp_path, env=env, text=True, capture_output=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESTORED 3 False 3" in done.stdout
    import mlflow

    client = mlflow.MlflowClient(sweep.uri)
    experiment = client.get_experiment_by_name(sweep.name)
    runs = client.search_runs([experiment.experiment_id], "tags.`spectral_sweep.role` = 'trial'")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3  # one run per trial


# --------------------------------------------------------------------- registry and checks


def test_register_model_adds_a_name_spaces_and_configs_accept() -> None:
    from torch import nn

    from trainables.config import TrialConfig
    from trainables.model_registry import MODELS, register_model
    from trainables.models import DeepLabV3Plus, build_model

    try:

        @register_model("tiny_deeplab")
        class Tiny(DeepLabV3Plus):
            name = "tiny_deeplab"

        assert Tiny.__name__ == "Tiny"  # the decorator returns the class itself
        cfg = TrialConfig.from_dict({"model": "tiny_deeplab", "input_size": 33})
        assert cfg.model == "tiny_deeplab"
        model = build_model("tiny_deeplab", backbone="resnet18", num_classes=3)
        assert isinstance(model, Tiny) and isinstance(model, nn.Module)
    finally:
        MODELS.pop("tiny_deeplab", None)
    with pytest.raises(ValueError, match="tiny_deeplab"):
        TrialConfig.from_dict({"model": "tiny_deeplab"})


def test_register_model_refuses_built_in_names_and_non_classes() -> None:
    from trainables.errors import InputError
    from trainables.model_registry import register_model

    with pytest.raises(InputError, match="built in"):
        register_model("dan", object)
    with pytest.raises(InputError, match="not a class"):
        register_model("mine", 42)
    with pytest.raises(InputError, match="name"):
        register_model(" spaced ", object)


def test_api_options_are_checked_like_flags_before_ray(tmp_path: Path) -> None:
    import orchestrator
    from trainables.errors import InputError

    storage = tmp_path / "runs"
    cases = {
        "cpus_per_trial": ("many", "not a valid float"),
        "search": ("random", "is not one of"),
        "sceduler": ("asha", "unknown setting 'sceduler'"),
        "num_samples": (3, "needs --search optuna"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(InputError, match=message):
            orchestrator.sweep("smoke", storage=str(storage), **{key: value})
    with pytest.raises(InputError, match="unknown search space"):
        orchestrator.sweep("no-such-space", storage=str(storage))
    with pytest.raises(InputError, match="restore"):
        orchestrator.sweep("smoke", resume=True)
    assert not storage.exists()  # nothing created by a refused sweep


def test_space_argument_forms(tmp_path: Path) -> None:
    from orchestrator.api import _namespace
    from search_spaces import get_space

    assert _namespace("smoke", None, {}).space == "smoke"
    file = tmp_path / "s.yaml"
    file.write_text("name: s\ngrid: {lrg: [9]}\n")
    assert _namespace(str(file), None, {}).space_file == str(file)
    space = get_space("smoke")
    assert _namespace(space, None, {}).space_object is space
    config = tmp_path / "c.yaml"
    config.write_text("space: demo\nsearch: optuna\nnum_samples: 4\n")
    args = _namespace("smoke", config, {"num_samples": 2})
    assert (args.space, args.search, args.num_samples) == ("smoke", "optuna", 2)
