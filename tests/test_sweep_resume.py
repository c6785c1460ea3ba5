"""A driver interrupted mid-sweep (Ctrl-C) and resumed: no finished trial runs again and no
MLflow run is duplicated; a trial retried from the checkpoint of its last epoch is not run
again either. The drivers are real ``spectral-sweep`` (or API) processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.mlflow_runs import runs_frame
from orchestrator import store, uris
from trainables.trial import evaluate_checkpoint

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
        # long enough that Ctrl-C, sent when a first run has FINISHED, lands while the next
        # trial trains: sent just as a trial reports its last epoch, Tune may save a state
        # without that trial's last checkpoint and train the epoch again on --resume (MLflow
        # still holds it once); with 8 images a trial lasted about as long as one poll
        "train_length": 48,
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


def trial_runs(uri: str, experiment: str = "resumable") -> pd.DataFrame:
    """The sweep's trial runs (its parent run left out)."""
    frame = runs_frame(uri, experiment)
    return frame.loc[frame[TRIAL_ID].notna()]


def resume(tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    """``sweep --resume --name NAME`` in a new process; it must exit 0."""
    resumed = subprocess.run(
        command(tmp_path, "--resume", "--name", name),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return resumed


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
        time.sleep(0.2)
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

    resumed = resume(tmp_path, "resumable")
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


#: A driver that stops after Tune wrote ``tuner.pkl`` and before its first experiment state
#: (a window of about 0.2 s, where a kill or Ctrl-C lands now and then).
STOPPED_IN_THE_WINDOW = """
import sys
from pathlib import Path
from orchestrator.settings import SweepSettings, save_settings
from orchestrator.tune import build_tuner, init_ray
from search_spaces import space_from_dict
import json
space = space_from_dict(json.loads(sys.argv[1]))
settings = SweepSettings(space=space.to_dict(), name=space.name, storage=sys.argv[2],
                         tracking_uri=sys.argv[3], max_concurrent=1, verbose=0)
save_settings(settings)
init_ray(None)
build_tuner(settings, open_parent=None)
"""


def test_a_sweep_stopped_before_tune_saved_any_state_resumes(tmp_path: Path) -> None:
    """``tuner.pkl`` but no ``experiment_state-*.json``: Tune recorded no trial, so ``--resume``
    starts its run anew in place (before: a KeyError traceback on every resume, and a new
    sweep refused because the name was taken)."""
    space = {**SPACE, "name": "window", "fixed": {**SPACE["fixed"], "epochs": 1,
             "train_length": 8}, "grid": {"lrg": [9, 5]}}  # fmt: skip
    uri = uris.default_tracking_uri(tmp_path)
    runs = tmp_path / "runs"
    subprocess.run([sys.executable, "-c", STOPPED_IN_THE_WINDOW, json.dumps(space), str(runs),
                    uri], check=True, capture_output=True, timeout=120)  # fmt: skip
    experiment = runs / "window"
    assert (experiment / "tuner.pkl").exists() and not list(experiment.glob("experiment_state*"))
    resumed = resume(tmp_path, "window")
    assert "2 finished, 0 failed, 0 unfinished of 2 trials" in resumed.stdout
    frame = trial_runs(uri, "window")
    assert len(frame) == 2 and set(frame["status"]) == {"FINISHED"}


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


#: A driver whose one trial's worker is killed (SIGKILL) once, after its final report: Tune's
#: function trainable waits inside ``tune.report`` until the driver asks for more, so a kill
#: made when the driver has registered the final checkpoint (``on_checkpoint``) lands there.
#: Tune retries the trial from that checkpoint. The driver counts the final results it gets.
KILLED_AFTER_ITS_LAST_REPORT = """
import os, signal, sys
from pathlib import Path
import orchestrator
from orchestrator.mlflow_callback import MlflowTrackingCallback

flag = Path(sys.argv[4])
finals = []
logged = MlflowTrackingCallback.on_trial_result


def count_finals(self, iteration, trials, trial, result, **info):
    finals.extend([1] if result.get("final") else [])
    logged(self, iteration, trials, trial, result, **info)


def kill_after_the_final_checkpoint(self, iteration, trials, trial, checkpoint, **info):
    if trial.last_result.get("final") and not flag.exists():
        flag.write_text(str(trial.last_result["pid"]))
        os.kill(trial.last_result["pid"], signal.SIGKILL)


MlflowTrackingCallback.on_trial_result = count_finals
MlflowTrackingCallback.on_checkpoint = kill_after_the_final_checkpoint
result = orchestrator.sweep(sys.argv[1], storage=sys.argv[2], tracking_uri=sys.argv[3],
                            quiet=True)
print("SWEEP", result.finished, result.errored, result.interrupted, "FINALS", len(finals))
"""


def test_a_trial_retried_from_its_final_checkpoint_is_not_run_again(tmp_path: Path) -> None:
    """A trial whose worker dies after its final report (killed here; a failure in the worker
    or a driver stopped before Tune saw the trial end does the same) is restored from its
    final checkpoint: it ends with the result it reported, nothing is evaluated or reported
    again, and its MLflow run holds every epoch once, with the post-hoc evaluation
    (``eval_lrgs``) of its final model."""
    space = {
        **SPACE,
        "name": "retried",
        "fixed": {**SPACE["fixed"], "eval_lrgs": [3]},
        "grid": {"lrg": [9]},
    }
    space_file = tmp_path / "retried.yaml"
    space_file.write_text(json.dumps(space))
    flag = tmp_path / "killed-pid"
    uri = uris.default_tracking_uri(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ITS_LAST_REPORT, str(space_file),
         str(tmp_path / "runs"), uri, str(flag)],
        cwd=tmp_path, env=env, text=True,
        capture_output=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert flag.exists()  # the kill happened, after the final report
    # one final result: the retried trial returned at once from its final checkpoint
    assert "SWEEP 1 0 False FINALS 1" in done.stdout, done.stdout[-2000:]
    assert "ActorDiedError" in done.stderr  # Tune saw the worker die, and retried the trial
    (trial_dir,) = [p for p in (tmp_path / "runs" / "retried").iterdir() if p.is_dir()]
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    # Tune's own log: no epoch twice. It may lack lines: when a trial restarts, Tune's JSON
    # logger copies result.json back from storage, and the syncs that carry lines there run in
    # the background (a final line missing was seen in CI, the first one here)
    epochs = [r["epoch"] for r in reports]
    assert len(epochs) == len(set(epochs)) and set(epochs) <= {0.0, 1.0}, epochs
    assert all(r["final"] is (r["epoch"] == 1.0) for r in reports)
    client = store.make_client(uri)
    (run_id,) = trial_runs(uri, "retried")["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    # the project's record: every epoch once, the final report was not made again
    assert [m.step for m in client.get_metric_history(run_id, "miou")] == [0, 1]
    # the post-hoc evaluation came with the final report: metrics at its step and posthoc.csv,
    # equal to the final checkpoint evaluated again at LRG 3 (trainables, no Tune, no MLflow)
    posthoc = client.get_metric_history(run_id, "posthoc/lrg_3/miou")
    assert [m.step for m in posthoc] == [1]
    table = pd.read_csv(client.download_artifacts(run_id, "posthoc.csv", str(tmp_path)))
    assert table["lrg"].tolist() == [3]
    assert table["miou"].iloc[0] == pytest.approx(posthoc[0].value, rel=1e-9)
    assert run.data.metrics["posthoc/lrg_3/gflops"] < run.data.metrics["gflops"]
    # two reports, two checkpoints: epoch 1 was not trained and saved again
    last_checkpoint = sorted(trial_dir.glob("checkpoint_*"))[-1]
    assert last_checkpoint.name == "checkpoint_000001"
    again = evaluate_checkpoint(last_checkpoint, [3])
    assert again[3]["miou"] == pytest.approx(posthoc[0].value, rel=1e-6)
