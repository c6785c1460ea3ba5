"""Real sweeps on a local Ray (2 CPUs, one start for the module) with real tiny trials:
SQLite and server tracking, a failing trial, Optuna + ASHA."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fault_scenarios as faults
import pandas as pd
import pytest

from analysis.mlflow_runs import runs_frame
from orchestrator import store, uris
from orchestrator.cli import main
from trainables.run_schema import Tag, from_params, run_name

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY_FIXED = {
    "backbone": "resnet18",
    "dataset": "synthetic-smooth",
    "input_size": 33,
    "num_classes": 3,
    "batch_size": 4,
    "epochs": 1,
    "lr": 0.01,
    "train_length": 8,
    "eval_length": 4,
    "device": "cpu",
}


def space_file(
    tmp_path: Path,
    name: str,
    grid: dict[str, list[Any]] | list[dict[str, list[Any]]],
    derived: dict[str, Any] | None = None,
    **fixed: Any,
) -> Path:
    """A YAML space file (JSON is valid YAML) with the tiny settings; ``grid`` may be a list
    of sub-grids."""
    grids = grid if isinstance(grid, list) else [grid]
    axes = {a for g in grids for a in g}
    settings = {k: v for k, v in {**TINY_FIXED, **fixed}.items() if k not in axes}
    space = {"name": name, "fixed": settings, "grids": grids, "derived": derived or {}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(space))
    return path


def sweep(tmp_path: Path, uri: str, *args: str) -> int:
    return main(["sweep", "--storage", str(tmp_path / "runs"), "--tracking-uri", uri, *args])


def check_finished_run(client: Any, run: Any) -> None:
    """A finished trial's run: metrics at step = epoch, the three artifacts."""
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert 0.0 <= metrics["miou"] <= 1.0 and metrics["gflops"] > 0
    assert "lrg" not in metrics and "native_lrg" not in metrics  # params only: logged once
    assert run.info.run_name == run_name(from_params(run.data.params))  # says what ran
    assert any(k.startswith("r_ce_nu") for k in metrics)
    history = client.get_metric_history(run.info.run_id, "miou")
    assert [m.step for m in history] == list(range(int(run.data.params["epochs"])))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"spectrum.csv", "spectrum.png", "per_class_iou.json"}
    assert run.data.tags[Tag.NODE_ID]


def check_event_times(client: Any, run: Any) -> None:
    """A run spans its trial, not the driver's writes: it ends when Tune ended the trial,
    before the writer drew and logged its spectrum.png (a local artifact, whose file time is
    the drawing's), and it starts before its first metric."""
    png = Path(urllib.parse.urlparse(run.info.artifact_uri).path) / "spectrum.png"
    assert run.info.end_time < png.stat().st_mtime_ns // 1_000_000
    first = min(m.timestamp for m in client.get_metric_history(run.info.run_id, "miou"))
    assert run.info.start_time <= first


def test_smoke_sweep_into_sqlite(
    ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = uris.default_tracking_uri(tmp_path)
    assert sweep(tmp_path, uri, "--space", "smoke") == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "GFLOPs" in out  # Tune's progress table with our columns
    assert "sweep smoke: 4 finished, 0 failed, 0 unfinished of 4 trials" in out

    everything = runs_frame(uri, "smoke")
    parent = everything.loc[everything["tags.spectral_sweep.role"] == "sweep"]
    assert len(parent) == 1 and parent["status"].iloc[0] == "FINISHED"
    assert parent["metrics.trials_finished"].iloc[0] == 4
    frame = everything.loc[everything["tags.spectral_sweep.role"] != "sweep"]
    assert set(frame["tags.mlflow.parentRunId"]) == {parent["run_id"].iloc[0]}  # nested
    assert len(frame) == 4 and set(frame["status"]) == {"FINISHED"}
    assert frame["tags.spectral_sweep.trial_id"].is_unique
    assert set(zip(frame["params.model"], frame["params.lrg"], strict=True)) == {
        ("deeplabv3plus", "9"),
        ("deeplabv3plus", "5"),
        ("dan", "9"),
        ("dan", "5"),
    }
    assert set(frame["tags.spectral_sweep.space"]) == {"smoke"}
    assert set(frame["tags.spectral_sweep.strategy"]) == {"exhaustive"}
    client = store.make_client(uri)
    for run_id in frame["run_id"]:
        run = client.get_run(run_id)
        check_finished_run(client, run)
        check_event_times(client, run)
    # Tune kept each trial's last checkpoint with the artifacts beside checkpoint.pt
    for trial_id in frame["tags.spectral_sweep.trial_id"]:
        checkpoints = sorted((tmp_path / "runs" / "smoke" / trial_id).glob("checkpoint_*"))
        assert checkpoints, trial_id
        names = {p.name for p in checkpoints[-1].iterdir()}
        assert {"checkpoint.pt", "spectrum.csv", "per_class_iou.json"} <= names


def test_a_failing_trial_does_not_stop_the_others(
    ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    path = space_file(
        tmp_path,
        "failing",
        {"dataset": ["synthetic-smooth", "folder"]},
        {"dataset": {"synthetic-smooth": {}, "folder": {"data_root": str(empty)}}},
        model="dan",
    )
    uri = uris.default_tracking_uri(tmp_path)
    assert sweep(tmp_path, uri, "--space-file", str(path), "--max-failures", "0", "--quiet") == 1
    captured = capsys.readouterr()
    assert "1 finished, 1 failed" in captured.out
    frame = runs_frame(uri, "failing")
    frame = frame.loc[frame["tags.spectral_sweep.role"] != "sweep"].set_index("params.dataset")
    assert frame.loc["synthetic-smooth", "status"] == "FINISHED"
    assert frame.loc["folder", "status"] == "FAILED"
    assert "Error" in frame.loc["folder", "tags.spectral_sweep.error"]


def dominated(points: list[tuple[float, float]], i: int) -> bool:
    """By hand: another point has no more GFLOPs and no less mIoU, one of them strictly."""
    c, v = points[i]
    return any(
        (c2 <= c and v2 >= v) and (c2 < c or v2 > v) for j, (c2, v2) in enumerate(points) if j != i
    )


def test_optuna_multi_objective_with_asha(
    ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    uri = uris.default_tracking_uri(tmp_path)
    config = tmp_path / "sweep.yaml"  # flags on the command line override the file
    config.write_text(
        "space: demo\nsearch: optuna\nnum_samples: 4\nmulti_objective: true\n"
        "scheduler: asha\nseed: 1\nquiet: true\n"
    )
    args = ["--config", str(config), "--space", "smoke", "--num-samples", "3"]
    assert sweep(tmp_path, uri, *args) == 0
    out = capsys.readouterr().out
    frame = runs_frame(uri, "smoke")
    parent = frame.loc[frame["tags.spectral_sweep.role"] == "sweep"].iloc[0]
    frame = frame.loc[frame["tags.spectral_sweep.role"] != "sweep"]
    assert len(frame) == 3 and set(frame["status"]) == {"FINISHED"}
    assert set(frame["params.model"]) <= {"deeplabv3plus", "dan"}
    assert set(frame["params.lrg_effective"]) <= {"9", "5"}
    assert frame["tags.spectral_sweep.config_key"].is_unique  # never the same training twice
    # the first sample's group gets its native-grid reference first (orchestrator.unique_search)
    assert "9" in set(frame["params.lrg_effective"])
    assert set(frame["params.input_size"]) == {"33"}  # fixed settings came with the samples
    # the Pareto front: printed, tagged on the runs, logged on the parent; checked by hand
    points = list(zip(frame["metrics.gflops"], frame["metrics.miou"], strict=True))
    on_front = [not dominated(points, i) for i in range(len(points))]
    tagged = list(frame.get("tags.spectral_sweep.pareto", pd.Series([None] * len(frame))) == "true")
    assert tagged == on_front and any(on_front)
    assert "Pareto front (GFLOPs against mIoU)" in out
    for name in frame.loc[on_front, "run_name"]:
        assert name in out
    client = store.make_client(uri)
    logged = {a.path for a in client.list_artifacts(parent["run_id"])}
    assert {"pareto_front.csv", "pareto_front.png", "space.yaml"} <= logged
    # the study is stored beside the tracking store; Optuna's own front agrees with ours
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert f"Optuna study 'smoke' at sqlite:///{tmp_path.resolve() / 'optuna.db'}" in out
    study = optuna.load_study(study_name="smoke", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and len(complete) <= 3
    values = [tuple(t.values) for t in complete]
    ours = {values[i] for i in range(len(values)) if not dominated(values, i)}
    assert ours == {tuple(t.values) for t in study.best_trials}
    measured = set(
        zip(frame["metrics.gflops"].round(6), frame["metrics.miou"].round(6), strict=True)
    )
    assert {(round(c, 6), round(v, 6)) for c, v in values} <= measured


# --------------------------------------------------------------------- MLflow server


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts proxied)."""
    server = faults.MlflowServer(tmp_path)
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.mark.mlflow_server
def test_sweep_against_a_real_mlflow_server(
    ray_local: Any, tmp_path: Path, mlflow_server: str
) -> None:
    # two sub-grids, each without the other's axis: that axis must stay at its default
    grids = [{"lrg": [3]}, {"annotation_nu_max": [2]}]
    path = space_file(tmp_path, "served", grids, model="deeplabv3plus", epochs=2)
    assert sweep(tmp_path, mlflow_server, "--space-file", str(path), "--quiet") == 0
    frame = runs_frame(mlflow_server, "served")
    frame = frame.loc[frame["tags.spectral_sweep.role"] != "sweep"]
    assert len(frame) == 2 and set(frame["status"]) == {"FINISHED"}
    # an absent setting is not logged: it reads back as a missing param
    settings = frame[["params.lrg", "params.annotation_nu_max"]]
    pairs = {tuple(None if pd.isna(v) else v for v in row) for row in settings.itertuples(False)}
    assert pairs == {("3", None), (None, "2")}
    client = store.make_client(mlflow_server)
    for run_id in frame["run_id"]:
        check_finished_run(client, client.get_run(run_id))
    assert list((tmp_path / "server-artifacts").rglob("spectrum.png"))  # stored by the server
