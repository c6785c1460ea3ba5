"""MLflow tracking without Ray: the run schema, artifacts, failures, no duplicate runs, URIs."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pandas as pd
import pytest

from orchestrator import tracking
from trainables.errors import InputError
from trainables.trial import TrialReport

CONFIG = {
    "model": "dan",
    "backbone": "resnet18",
    "dataset": "synthetic-fine",
    "input_size": 33,
    "lrg": 5,
    "num_classes": 3,
    "epochs": 2,
}


def spectrum_frame(bands: int = 9) -> pd.DataFrame:
    """A spectrum table in SpectrumAccumulator.to_frame()'s columns (decaying profile)."""
    k = list(range(bands))
    profile = [0.5**i for i in k]
    total = sum(profile)
    r_ce = [abs(1 - sum(profile[: i + 1]) / total) for i in k]
    label = [1.0 / (1 + i) for i in k]
    pred = [1.0 / (1 + i) ** 2 for i in k]
    return pd.DataFrame(
        {
            "k": k,
            "band_profile": profile,
            "r_ce": r_ce,
            "label_magnitude": label,
            "pred_magnitude": pred,
            "label_magnitude_norm": [v / max(label) for v in label],
            "pred_magnitude_norm": [v / max(pred) for v in pred],
        }
    )


def report(epoch: int, miou: float, final: bool) -> TrialReport:
    metrics = {"epoch": float(epoch), "miou": miou, "loss": 1.0 - miou, "gflops": 0.1}
    metrics["r_ce_nu1"] = 0.05
    return TrialReport(
        epoch=epoch,
        metrics=metrics,
        spectrum=spectrum_frame(),
        per_class_iou=[0.5, float("nan"), miou],
        checkpoint_path=None,
        final=final,
    )


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating its schema takes seconds); tests use their
    own experiment names."""
    return tracking.default_tracking_uri(tmp_path_factory.mktemp("mlflow"))


def test_default_uri_is_an_absolute_sqlite_file(tmp_path: Path) -> None:
    uri = tracking.default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.sqlite_path(uri) == tmp_path.resolve() / "mlflow.db"
    assert tracking.ui_command(uri) == f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"


def test_log_trial_run_writes_the_schema(uri: str, tmp_path: Path) -> None:
    tags = tracking.sweep_tags("sw", "smoke", "estimate", "reference")
    reports = [report(0, 0.4, False), report(1, 0.6, True)]
    run_id = tracking.log_trial_run(uri, "schema", "t-1", CONFIG, reports, tags=tags)

    client = tracking.make_client(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "t-1"
    assert run.data.tags[tracking.TAG_SWEEP] == "sw"
    assert run.data.tags[tracking.TAG_TRIAL_ID] == "t-1"
    assert run.data.tags[tracking.TAG_SPACE] == "smoke"
    assert run.data.tags[tracking.TAG_STRATEGY] == "estimate"
    assert run.data.tags[tracking.TAG_ROLE] == "reference"
    params = run.data.params
    assert (
        params["model"] == "dan" and params["lrg"] == "5" and params["annotation_nu_max"] == "None"
    )
    assert params["lrg_effective"] == "5" and params["native_lrg"] == "9"
    assert {"prune_rate", "decoder_prune_rate", "seed", "extra"} <= set(params)
    history = client.get_metric_history(run_id, "miou")
    assert [(m.step, m.value) for m in history] == [(0, 0.4), (1, 0.6)]
    assert run.data.metrics["r_ce_nu1"] == 0.05

    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"spectrum.csv", "spectrum.png", "per_class_iou.json"}
    local = Path(client.download_artifacts(run_id, "per_class_iou.json", str(tmp_path)))
    assert json.loads(local.read_text()) == [0.5, None, 0.6]
    csv = pd.read_csv(client.download_artifacts(run_id, "spectrum.csv", str(tmp_path)))
    assert list(csv.columns) == list(spectrum_frame().columns) and len(csv) == 9
    # artifacts live beside the database, not in the working directory
    db = tracking.sqlite_path(uri)
    assert db is not None
    assert run.info.artifact_uri.startswith((db.parent / "mlartifacts" / "schema").as_uri())


def test_a_finished_trial_is_not_logged_twice(uri: str) -> None:
    tags = tracking.sweep_tags("twice", "smoke")
    first = tracking.log_trial_run(uri, "twice", "t-1", CONFIG, [report(0, 0.4, True)], tags=tags)
    again = tracking.log_trial_run(uri, "twice", "t-1", CONFIG, [report(0, 0.9, True)], tags=tags)
    assert again == first
    frame = tracking.runs_frame(uri, "twice")
    assert len(frame) == 1 and frame.loc[0, "metrics.miou"] == 0.4


def test_failed_run_keeps_the_error_and_reopens(uri: str) -> None:
    client = tracking.make_client(uri)
    experiment_id = tracking.ensure_experiment(client, "failed", uri)
    tags = tracking.sweep_tags("failed", "smoke")
    run_id, finished = tracking.start_trial_run(client, experiment_id, "t-2", CONFIG, tags)
    assert not finished
    trace = (
        "Traceback (most recent call last):\n  File x\ntrainables.trial.TrialDiverged: loss nan\n"
    )
    tracking.end_trial_run(client, run_id, "FAILED", error=trace)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.TAG_ERROR] == "trainables.trial.TrialDiverged: loss nan"
    assert "Traceback" in run.data.tags[tracking.TAG_ERROR_TRACE]
    # a restarted trial gets its run back (RUNNING), not a second one
    again, finished = tracking.start_trial_run(client, experiment_id, "t-2", CONFIG, tags)
    assert (again, finished) == (run_id, False)
    reopened = client.get_run(run_id)
    assert reopened.info.status == "RUNNING" and tracking.TAG_ERROR not in reopened.data.tags
    assert len(tracking.runs_frame(uri, "failed")) == 1


def test_runs_frame_unknown_experiment(uri: str) -> None:
    tracking.log_trial_run(
        uri, "present", "t", CONFIG, [report(0, 0.5, True)], tags=tracking.sweep_tags("p", "s")
    )
    with pytest.raises(InputError, match=r"no experiment 'absent' .* experiments: .*present"):
        tracking.runs_frame(uri, "absent")


def test_runs_command_table_and_csv(
    uri: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli import main

    tags = tracking.sweep_tags("sw", "smoke")
    for i, lrg in enumerate((9, 5)):
        cfg = {**CONFIG, "lrg": lrg}
        tracking.log_trial_run(uri, "sw", f"t-{i}", cfg, [report(0, 0.3 + i / 10, True)], tags=tags)
    assert main(["runs", "--experiment", "sw", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["trial", "status", "model", "dataset"]
    assert out[1].split()[:5] == ["t-0", "FINISHED", "dan", "synthetic-fine", "9"]
    assert out[-1] == "2 runs in experiment 'sw'"
    assert main(["runs", "--experiment", "sw", "--tracking-uri", uri, "--csv"]) == 0
    csv = capsys.readouterr().out
    frame = pd.read_csv(pd.io.common.StringIO(csv))
    assert len(frame) == 2 and {"params.lrg_effective", "metrics.miou"} <= set(frame.columns)
    # an experiment without runs is an input error too
    tracking.ensure_experiment(tracking.make_client(uri), "empty", uri)
    assert main(["runs", "--experiment", "empty", "--tracking-uri", uri]) == 2
    assert "has no runs" in capsys.readouterr().err


def test_retry_on_locked_database() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.retry_locked(flaky, delay=0.001) == "ok" and len(calls) == 3
    with pytest.raises(ValueError, match="other"):
        tracking.retry_locked(lambda: (_ for _ in ()).throw(ValueError("other")))


def test_check_tracking_uri(tmp_path: Path) -> None:
    tracking.check_tracking_uri(tracking.default_tracking_uri(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        tracking.check_tracking_uri(f"sqlite:///{tmp_path}/missing/mlflow.db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="unreachable"):
        tracking.check_tracking_uri(f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(InputError, match="not supported"):
        tracking.check_tracking_uri(str(tmp_path))


def test_error_tags_and_params_are_strings() -> None:
    tags = tracking.error_tags("x\n\nValueError: bad\n")
    assert tags[tracking.TAG_ERROR] == "ValueError: bad"
    params = tracking.trial_params({**CONFIG, "lrg": None, "extra": {"image_size": 40}})
    assert params["lrg"] == "None" and params["lrg_effective"] == "9"
    assert json.loads(params["extra"]) == {"image_size": 40}
    assert all(isinstance(v, str) for v in params.values())
    with pytest.raises(InputError, match="strategy"):
        tracking.sweep_tags("a", "b", strategy="random")


def test_spectrum_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    tracking.plot_spectrum(spectrum_frame(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(spectrum_frame()["r_ce"].iloc[-1])
