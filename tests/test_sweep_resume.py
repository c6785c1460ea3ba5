"""A driver interrupted mid-sweep (Ctrl-C) and resumed: no finished trial runs again and no
MLflow run is duplicated. Both drivers are real ``spectral-sweep`` processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.mlflow_runs import runs_frame
from orchestrator import store, uris

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = {
    "name": "resumable",
    "fixed": {
        "backbone": "resnet18",
        "dataset": "synthetic-smooth",
        "model": "dan",
        "input_size": 33,
        "num_classes": 3,
        "batch_size": 4,
        "epochs": 2,
        "lr": 0.01,
        "train_length": 8,
        "eval_length": 4,
        "device": "cpu",
    },
    "grid": {"lrg": [9, 7, 5]},
}


def command(tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "sweep",
        "--storage",
        str(tmp_path / "runs"),
        "--tracking-uri",
        uris.default_tracking_uri(tmp_path),
        "--max-concurrent",
        "1",
        "--quiet",
        *args,
    ]


def finished_runs(uri: str, experiment_dir: Path | None = None) -> list[str]:
    """The trial ids whose MLflow run FINISHED. With ``experiment_dir``: none until a trial has
    reported there, so the test never opens the store while the driver is creating it."""
    if experiment_dir is not None and not any(experiment_dir.glob("*/result.json")):
        return []
    try:
        frame = runs_frame(uri, "resumable")
    except Exception:  # no database or experiment yet
        return []
    if frame.empty or TRIAL_ID not in frame:
        return []
    frame = frame.loc[frame[TRIAL_ID].notna()]
    return list(frame.loc[frame["status"] == "FINISHED", TRIAL_ID])


TRIAL_ID = "tags.spectral_sweep.trial_id"


def trial_runs(uri: str) -> pd.DataFrame:
    """The sweep's trial runs (its parent run left out)."""
    frame = runs_frame(uri, "resumable")
    return frame.loc[frame[TRIAL_ID].notna()]


def result_lines(tmp_path: Path, trial_id: str) -> int:
    return len(
        (tmp_path / "runs" / "resumable" / trial_id / "result.json").read_text().splitlines()
    )


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    space = tmp_path / "resumable.yaml"
    space.write_text(json.dumps(SPACE))
    uri = uris.default_tracking_uri(tmp_path)
    driver = subprocess.Popen(
        command(tmp_path, "--space-file", str(space)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not finished_runs(uri, tmp_path / "runs" / "resumable"):
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(1)
    driver.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and stops
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, out + err
    assert "spectral-sweep sweep --resume --name resumable" in err

    done_before = finished_runs(uri)
    assert 1 <= len(done_before) < 3
    statuses = set(trial_runs(uri)["status"])
    assert statuses <= {"FINISHED", "KILLED"}  # the interrupted trial's run was closed
    lines_before = {t: result_lines(tmp_path, t) for t in done_before}
    client = store.make_client(uri)
    frame = trial_runs(uri).set_index(TRIAL_ID)
    end_times = {t: client.get_run(frame.loc[t, "run_id"]).info.end_time for t in done_before}

    resumed = subprocess.run(
        command(tmp_path, "--resume", "--name", "resumable"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3 finished, 0 failed, 0 unfinished of 3 trials" in resumed.stdout

    frame = trial_runs(uri)
    assert len(frame) == 3 and frame[TRIAL_ID].is_unique  # no duplicate runs
    assert set(frame["status"]) == {"FINISHED"}
    for trial_id in done_before:  # finished trials were not run again
        assert result_lines(tmp_path, trial_id) == lines_before[trial_id]
        run_id = frame.set_index(TRIAL_ID).loc[trial_id, "run_id"]
        assert client.get_run(run_id).info.end_time == end_times[trial_id]
    for run_id in frame["run_id"]:  # every epoch logged once
        steps = [m.step for m in client.get_metric_history(run_id, "miou")]
        assert steps == [0, 1]


def test_an_interrupted_optuna_sweep_resumes_its_stored_study(tmp_path: Path) -> None:
    """Ctrl-C during an Optuna sweep, then --resume: the same study in optuna.db goes on (no
    second study), every trial ends with one FINISHED run."""
    import optuna
    from fault_scenarios import Sweep, finish, kill_group, wait_for

    sweep = Sweep(tmp_path, "optuna-resume", trials=3, epochs=3)
    extra = ("--search", "optuna", "--num-samples", "3", "--max-concurrent", "1")
    driver = sweep.start(*extra)
    wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
    kill_group(driver, signal.SIGINT)
    assert finish(driver) == 130, driver.output()[-2000:]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["optuna-resume"]
    resumed = sweep.start(resume=True)
    assert finish(resumed) == 0, resumed.output()[-2000:]
    assert "Optuna study 'optuna-resume'" in resumed.output()
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["optuna-resume"]
    study = optuna.load_study(study_name="optuna-resume", storage=storage)
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    frame = runs_frame(sweep.uri, "optuna-resume")
    trials = frame.loc[frame["tags.spectral_sweep.role"] == "trial"]
    assert len(trials) == 3 and set(trials["status"]) == {"FINISHED"}
    assert trials["tags.spectral_sweep.config_key"].is_unique
