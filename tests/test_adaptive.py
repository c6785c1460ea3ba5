"""The adaptive strategy live (a real local Ray and MLflow: phases, reasons, resume by replay)
and every sweep teaching the next (``--estimator-from``, a real MLflow store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import analyze, load_runs_csv
from analysis.mlflow_runs import runs_frame
from analysis.sweep import fit_experiments
from orchestrator import store, uris
from orchestrator.cli import main
from trainables.config import TrialConfig
from trainables.run_schema import Role, Tag

#: A past sweep by hand: two groups at input 65 (native grid 17), R_ce of each reference at
#: the bands of LRG 17, 9, 5, 3 (8, 4, 2, 1), FLOPs and mIoU per LRG.
PAST = {
    "synthetic-smooth": {8: 0.004, 4: 0.03, 2: 0.12, 1: 0.35},
    "synthetic-fine": {8: 0.006, 4: 0.05, 2: 0.2, 1: 0.6},
}
MIOU = {"synthetic-smooth": (0.80, 0.78, 0.72, 0.6), "synthetic-fine": (0.5, 0.48, 0.42, 0.3)}
GFLOPS = (2.0, 1.2, 1.0, 0.95)
LRGS = (17, 9, 5, 3)


def past_rows() -> list[dict[str, object]]:
    rows = []
    for dataset, curve in PAST.items():
        for lrg, miou, gflops in zip(LRGS, MIOU[dataset], GFLOPS, strict=True):
            row: dict[str, object] = {"model": "dan", "dataset": dataset, "prune_rate": 0.0}
            row |= {"lrg": lrg, "miou": miou, "gflops": gflops, "input_size": 65}
            if lrg == 17:
                row |= {f"r_ce_nu{nu}": r for nu, r in curve.items()}
            rows.append(row)
    return rows


def log_past(uri: str, experiment: str) -> None:
    """The past sweep as MLflow trial runs, through the sweep's own writers."""
    client = store.make_client(uri)
    experiment_id = store.ensure_experiment(client, experiment, uri)
    tags = store.sweep_tags(experiment, "past", "exhaustive", Role.TRIAL)
    for i, row in enumerate(past_rows()):
        config = TrialConfig.from_dict(
            {"model": "dan", "backbone": "resnet18", "dataset": row["dataset"]}
            | {"input_size": 65, "num_classes": 4, "lrg": row["lrg"]}
        )
        run_id, _ = store.start_trial_run(client, experiment_id, f"t{i}", config, tags)
        metrics = {k: float(v) for k, v in row.items() if k in ("miou", "gflops") or "nu" in k}
        store.log_metrics(client, run_id, metrics, step=0)
        store.end_trial_run(client, run_id, "FINISHED")


@pytest.fixture(scope="module")
def past_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = uris.default_tracking_uri(tmp_path_factory.mktemp("past"))
    log_past(uri, "past")
    store.ensure_experiment(store.make_client(uri), "empty", uri)
    return uri


def test_estimator_from_an_experiment_equals_the_fit_of_its_table(
    past_uri: str, tmp_path: Path
) -> None:
    """The same sweep read from MLflow and from a CSV gives the same estimator."""
    csv = tmp_path / "past.csv"
    pd.DataFrame(past_rows()).to_csv(csv, index=False)
    expected = analyze(load_runs_csv(csv), load_spectra=False).estimator
    fitted = fit_experiments(past_uri, ["past"])
    assert expected is not None and fitted.n == expected.n == 5  # the points with R_ce < 0.2
    assert fitted.slope == pytest.approx(expected.slope)
    assert fitted.intercept == pytest.approx(expected.intercept)
    assert fitted.residual_std == pytest.approx(expected.residual_std)


def test_plan_estimator_from(past_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    runs = runs_frame(past_uri, "past")
    reference = runs.loc[runs["params.lrg"] == "17", "run_id"].iloc[0]
    argv = ["plan", "--estimator-from", "past", "--run-id", reference, "--tracking-uri", past_uri]
    assert main([*argv, "--lrgs", "9", "5", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    fitted = fit_experiments(past_uri, ["past"])
    rows = {r["lrg"]: r for r in plan["rows"]}
    assert rows[9]["r_ce"] == pytest.approx(PAST["synthetic-smooth"][4])  # its reference's
    assert rows[9]["predicted_drop"] == pytest.approx(fitted.predict_drop(rows[9]["r_ce"]))
    for bad, message in (("nope", "nope"), ("empty", "has no runs"), ("past,", "E1,E2")):
        assert main(["plan", "--estimator-from", bad, "--run-id", reference,
                     "--tracking-uri", past_uri]) == 2  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_sweep_estimator_from_an_unknown_experiment_fails_before_ray(
    past_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--space", "smoke", "--strategy", "adaptive", "--estimator-from", "nope"]
    argv += ["--tracking-uri", past_uri, "--storage", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert main(["sweep", "--space", "smoke", "--budget", "2"]) == 2
    assert "--budget needs --strategy adaptive" in capsys.readouterr().err


# --------------------------------------------------------------------- live

SPACE = """
name: adapt-tiny
fixed: {model: dan, backbone: resnet18, dataset: synthetic-smooth, input_size: 33,
        num_classes: 3, batch_size: 4, epochs: 1, lr: 0.01, train_length: 8, eval_length: 4,
        num_threads: 1, seed: 0}
grid: {lrg: [9, 7, 5, 3]}
"""


@pytest.mark.ray
@pytest.mark.slow
def test_adaptive_sweep_live_records_why_and_resumes_by_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    uri = uris.default_tracking_uri(tmp_path)
    storage = tmp_path / "runs"
    argv = ["sweep", "--space-file", str(space), "--strategy", "adaptive", "--quiet"]
    argv += ["--tracking-uri", uri, "--storage", str(storage)]
    argv += ["--stop-probability", "0.001", "--tolerance", "0"]  # train more: several phases
    if ray.is_initialized():
        ray.shutdown()
    try:
        assert main(argv) == 0
        first = capsys.readouterr().out
        runs = runs_frame(uri, "adapt-tiny")
        assert (runs[f"tags.{Tag.ROLE}"] == Role.SWEEP).sum() == 1  # one parent, every phase
        runs = runs.loc[runs[f"tags.{Tag.ROLE}"] != Role.SWEEP]
        roles = runs[f"tags.{Tag.ROLE}"]
        candidates = runs.loc[roles == Role.CANDIDATE]
        total = len(yaml.safe_load(SPACE)["grid"]["lrg"])  # the exhaustive sweep's trainings
        saved = total - 1 - len(candidates)
        assert f"adaptive strategy saved {saved} of the {total} trainings" in first
        assert (roles == Role.REFERENCE).sum() == 1 and len(candidates) >= 2
        assert set(runs["status"]) == {"FINISHED"}
        assert candidates["params.lrg"].is_unique  # one run per configuration
        assert candidates[f"tags.{Tag.REASON}"].str.contains("P(better)", regex=False).all()
        assert sorted(candidates["metrics.phase"]) == list(range(1, len(candidates) + 1))
        reference = runs.loc[roles == Role.REFERENCE].iloc[0]
        client = store.make_client(uri)
        name = "adaptive_plan_truncation.json"
        path = client.download_artifacts(reference["run_id"], name, str(tmp_path))
        plan = json.loads(Path(path).read_text())
        trained = {9, *candidates["params.lrg"].astype(int)}
        assert plan["pick"]["lrg"] in trained  # the pick is always trained
        assert reference["metrics.recommended_lrg"] == plan["pick"]["lrg"]
        assert len(plan["choices"]) == len(candidates)

        # the driver died during the last phase, before it recorded anything: its run and its
        # Tune state are gone; --resume replays the earlier phases from MLflow and trains it
        last = candidates.loc[candidates["metrics.phase"].idxmax()]
        client.delete_run(last["run_id"])
        shutil.rmtree(storage / f"adapt-tiny-adaptive{int(last['metrics.phase'])}")
        assert main(["sweep", "--resume", "--name", "adapt-tiny", "--storage", str(storage)]) == 0
        again = capsys.readouterr().out
        after = runs_frame(uri, "adapt-tiny")
        after = after.loc[after[f"tags.{Tag.ROLE}"] != Role.SWEEP]
        assert len(after) == len(runs)  # the lost run trained again, nothing else
        assert sorted(after["params.lrg"]) == sorted(runs["params.lrg"])
        pick = [line for line in first.splitlines() if line.startswith("truncation:")]
        assert pick and pick == [
            line for line in again.splitlines() if line.startswith("truncation:")
        ]
    finally:
        ray.shutdown()
