"""MLflow tracking without Ray: the run schema, artifacts, failures, no duplicate runs, URIs."""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pytest
from fixtures_data import spectrum_frame

from analysis.mlflow_runs import runs_frame
from analysis.plots import plot_spectrum
from orchestrator import store, uris
from orchestrator.mlflow_callback import numeric_metrics
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import Tag, posthoc_metrics, to_params
from trainables.trial import TrialReport

CONFIG = TrialConfig(
    model="dan",
    backbone="resnet18",
    dataset="synthetic-fine",
    input_size=33,
    lrg=5,
    num_classes=3,
    epochs=2,
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


def log_run(
    uri: str,
    experiment: str,
    trial_id: str,
    config: TrialConfig,
    reports: Sequence[TrialReport],
    tags: Mapping[str, str],
) -> str:
    """One whole trial through the writers the sweep's callback uses; returns the run id."""
    client = store.make_client(uri)
    experiment_id = store.ensure_experiment(client, experiment, uri)
    run_id, finished = store.start_trial_run(client, experiment_id, trial_id, config, tags)
    if finished:
        return run_id
    for r in reports:
        store.log_metrics(client, run_id, numeric_metrics(r.metrics), step=int(r.epoch))
    with tempfile.TemporaryDirectory() as tmp:
        last = reports[-1]
        store.write_trial_artifacts(tmp, last.spectrum, last.per_class_iou, last.posthoc)
        store.log_trial_artifacts(client, run_id, tmp)
    store.end_trial_run(client, run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating its schema takes seconds); tests use their
    own experiment names."""
    return uris.default_tracking_uri(tmp_path_factory.mktemp("mlflow"))


def test_default_uri_is_an_absolute_sqlite_file(tmp_path: Path) -> None:
    uri = uris.default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert uris.sqlite_path(uri) == tmp_path.resolve() / "mlflow.db"
    assert uris.ui_command(uri) == f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"


def test_a_trial_run_writes_the_schema(uri: str, tmp_path: Path) -> None:
    tags = store.sweep_tags("sw", "smoke", "estimate", "reference")
    reports = [report(0, 0.4, False), report(1, 0.6, True)]
    run_id = log_run(uri, "schema", "t-1", CONFIG, reports, tags=tags)

    client = store.make_client(uri)
    run = client.get_run(run_id)
    assert (
        run.info.status == "FINISHED" and run.info.run_name == "dan-resnet18-synthetic-fine-lrg5-p0"
    )
    assert (
        run.data.tags["mlflow.source.name"] == "spectral-sweep" and "mlflow.user" in run.data.tags
    )
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "synthetic-fine" and dataset.tags[0].value == "training"
    assert run.data.tags[Tag.SWEEP] == "sw"
    assert run.data.tags[Tag.TRIAL_ID] == "t-1"
    assert run.data.tags[Tag.SPACE] == "smoke"
    assert run.data.tags[Tag.STRATEGY] == "estimate"
    assert run.data.tags[Tag.ROLE] == "reference"
    assert run.data.tags[Tag.CONFIG_KEY] == CONFIG.key
    params = run.data.params
    assert params["model"] == "dan" and params["lrg"] == "5"
    assert "annotation_nu_max" not in params  # an absent setting is not logged
    assert params["lrg_effective"] == "5" and params["native_lrg"] == "9"
    assert {"prune_rate", "decoder_prune_rate", "seed"} <= set(params)
    assert "extra" not in params  # empty, so absent
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
    db = uris.sqlite_path(uri)
    assert db is not None
    assert run.info.artifact_uri.startswith((db.parent / "mlartifacts" / "schema").as_uri())


def test_posthoc_evaluations_are_logged_as_a_table_and_metrics(uri: str, tmp_path: Path) -> None:
    """``eval_lrgs``: the final model at each LRG as ``posthoc.csv`` (a row per LRG, in the
    order evaluated) and as ``posthoc/lrg_{S}/...`` metrics of the final step."""
    posthoc = {
        5: {"miou": 0.5, "boundary_iou": 0.25, "gflops": 0.08, "fpi": 0.16, "r_ce_lrg": 0.1},
        3: {"miou": 0.375, "boundary_iou": 0.125, "gflops": 0.06, "fpi": 0.16, "r_ce_lrg": 0.3},
    }
    assert posthoc_metrics(posthoc)["posthoc/lrg_3/miou"] == 0.375
    assert len(posthoc_metrics(posthoc)) == 10  # five reported metrics at two LRGs
    final = dataclasses.replace(report(1, 0.6, True), posthoc=posthoc)
    final.metrics.update(posthoc_metrics(posthoc))
    run_id = log_run(uri, "posthoc", "t-p", CONFIG, [report(0, 0.4, False), final], tags={})

    client = store.make_client(uri)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"spectrum.csv", "spectrum.png", "per_class_iou.json", "posthoc.csv"}
    table = pd.read_csv(client.download_artifacts(run_id, "posthoc.csv", str(tmp_path)))
    assert list(table.columns) == [
        "lrg", "miou", "boundary_iou", "pixel_acc", "loss", "gflops", "fpi", "r_ce_lrg"
    ]  # fmt: skip
    assert table["lrg"].tolist() == [5, 3] and table["miou"].tolist() == [0.5, 0.375]
    assert table["pixel_acc"].isna().all()  # not measured: empty, not made up
    history = client.get_metric_history(run_id, "posthoc/lrg_5/boundary_iou")
    assert [(m.step, m.value) for m in history] == [(1, 0.25)]


def test_a_finished_trial_is_not_logged_twice(uri: str) -> None:
    tags = store.sweep_tags("twice", "smoke")
    first = log_run(uri, "twice", "t-1", CONFIG, [report(0, 0.4, True)], tags=tags)
    again = log_run(uri, "twice", "t-1", CONFIG, [report(0, 0.9, True)], tags=tags)
    assert again == first
    frame = runs_frame(uri, "twice")
    assert len(frame) == 1 and frame.loc[0, "metrics.miou"] == 0.4


def test_failed_run_keeps_the_error_and_reopens(uri: str) -> None:
    client = store.make_client(uri)
    experiment_id = store.ensure_experiment(client, "failed", uri)
    tags = store.sweep_tags("failed", "smoke")
    run_id, finished = store.start_trial_run(client, experiment_id, "t-2", CONFIG, tags)
    assert not finished
    trace = (
        "Traceback (most recent call last):\n  File x\ntrainables.trial.TrialDiverged: loss nan\n"
    )
    store.end_trial_run(client, run_id, "FAILED", error=trace)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tag.ERROR] == "trainables.trial.TrialDiverged: loss nan"
    assert "Traceback" in run.data.tags[Tag.ERROR_TRACE]
    # a restarted trial gets its run back (RUNNING), not a second one
    again, finished = store.start_trial_run(client, experiment_id, "t-2", CONFIG, tags)
    assert (again, finished) == (run_id, False)
    reopened = client.get_run(run_id)
    assert reopened.info.status == "RUNNING" and Tag.ERROR not in reopened.data.tags
    assert len(runs_frame(uri, "failed")) == 1


def test_runs_frame_unknown_experiment(uri: str) -> None:
    log_run(uri, "present", "t", CONFIG, [report(0, 0.5, True)], tags=store.sweep_tags("p", "s"))
    with pytest.raises(InputError, match=r"no experiment 'absent' .* experiments: .*present"):
        runs_frame(uri, "absent")


def test_runs_command_table_and_csv(
    uri: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli import main

    tags = store.sweep_tags("sw", "smoke")
    for i, lrg in enumerate((9, 5)):
        cfg = dataclasses.replace(CONFIG, lrg=lrg)
        log_run(uri, "sw", f"t-{i}", cfg, [report(0, 0.3 + i / 10, True)], tags=tags)
    assert main(["runs", "--experiment", "sw", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["trial", "status", "model", "dataset"]
    rows = sorted(line.split()[:5] for line in out[1:3])  # named after what ran
    assert rows[1] == [
        "dan-resnet18-synthetic-fine-lrg9-p0",
        "FINISHED",
        "dan",
        "synthetic-fine",
        "9",
    ]
    assert out[-1] == "2 runs in experiment 'sw'"
    assert main(["runs", "--experiment", "sw", "--tracking-uri", uri, "--csv"]) == 0
    csv = capsys.readouterr().out
    frame = pd.read_csv(pd.io.common.StringIO(csv))
    assert len(frame) == 2 and {"params.lrg_effective", "metrics.miou"} <= set(frame.columns)
    # an experiment without runs is an input error too
    store.ensure_experiment(store.make_client(uri), "empty", uri)
    assert main(["runs", "--experiment", "empty", "--tracking-uri", uri]) == 2
    assert "has no runs" in capsys.readouterr().err


def test_retry_on_locked_database() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert store.retry_locked(flaky, delay=0.001) == "ok" and len(calls) == 3
    with pytest.raises(ValueError, match="other"):
        store.retry_locked(lambda: (_ for _ in ()).throw(ValueError("other")))


def test_check_tracking_uri(tmp_path: Path) -> None:
    uris.check_tracking_uri(uris.default_tracking_uri(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        uris.check_tracking_uri(f"sqlite:///{tmp_path}/missing/mlflow.db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="unreachable"):
        uris.check_tracking_uri(f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(InputError, match="not supported"):
        uris.check_tracking_uri(str(tmp_path))


def test_error_tags_and_params_are_strings() -> None:
    tags = store.error_tags("x\n\nValueError: bad\n")
    assert tags[Tag.ERROR] == "ValueError: bad"
    params = to_params(dataclasses.replace(CONFIG, lrg=None, extra={"image_size": 40}))
    assert "lrg" not in params and params["lrg_effective"] == "9"
    assert json.loads(params["extra"]) == {"image_size": 40}
    assert all(isinstance(v, str) for v in params.values())
    with pytest.raises(InputError, match="strategy"):
        store.sweep_tags("a", "b", strategy="random")


def test_spectrum_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    plot_spectrum(spectrum_frame(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(spectrum_frame()["r_ce"].iloc[-1])


def test_a_prediction_run_is_logged_once(uri: str) -> None:
    client = store.make_client(uri)
    experiment_id = store.ensure_experiment(client, "predicted", uri)
    tags = store.sweep_tags("predicted", "smoke", "estimate", "prediction")
    predicted = {"predicted_miou": 0.5, "r_ce": float("nan")}
    run_id = store.log_prediction_run(client, experiment_id, CONFIG, predicted, tags)
    again = store.log_prediction_run(client, experiment_id, CONFIG, predicted, tags)
    assert again == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"predict-{CONFIG.key}"
    assert run.data.tags[Tag.ROLE] == "prediction" and run.data.tags[Tag.CONFIG_KEY] == CONFIG.key
    assert run.data.metrics == {"predicted_miou": 0.5}  # non-finite predictions are left out
    assert run.data.params == to_params(CONFIG)


def test_a_new_sqlite_store_is_created_in_the_background(tmp_path: Path) -> None:
    """``run_sweep`` opens a local store while Ray starts: the schema is there after the
    thread, and opening it again (as the callback's writer does) finds it ready."""
    import sqlite3

    database = tmp_path / "mlflow.db"
    thread = store.open_in_background(f"sqlite:///{database}")
    assert thread is not None
    thread.join(timeout=120)
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"experiments", "runs", "metrics", "params"} <= tables
    client = store.make_client(f"sqlite:///{database}")
    assert client.search_experiments()[0].name == "Default"
    assert store.open_in_background("http://127.0.0.1:5000") is None  # nothing to create here
