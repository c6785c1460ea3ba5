"""``spectral-sweep analyze`` and ``plan`` end to end: from a runs CSV, and from a real SQLite
MLflow store holding runs in the tracking schema (params, metrics, a spectrum.csv artifact).

The store is written here with the MLflow client, standing in for a sweep's driver.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import Estimator
from orchestrator.cli import main

INPUT_SIZE = 65  # native grid 17, image bands 0..32
NATIVE = 17
LRGS = (17, 13, 9, 5, 3)
DATASETS = {"synthetic-smooth": 0.6, "synthetic-fine": 1.2}  # R_ce scale of each data set
SLOPE = 0.5  # every run's drop is SLOPE * (its R_ce - the reference's own R_ce)
REF_BAND = (NATIVE - 1) // 2  # the truncation reference's own band: R_ce there is not 0


def truncation_points(scale: float) -> list[tuple[float, float]]:
    """(R_ce, drop) of one LRG group, the reference's own point (R_ce at band 8, 0) included."""
    curve = r_ce_curve(scale)
    return [(curve[(s - 1) // 2], SLOPE * (curve[(s - 1) // 2] - curve[REF_BAND])) for s in LRGS]


def expected_fit(points: list[tuple[float, float]], r_ce_max: float = 0.2) -> dict[str, float]:
    """Least squares by numpy over the points below ``r_ce_max``: slope, intercept, R^2."""
    kept = np.array([p for p in points if p[0] < r_ce_max])
    slope, intercept = np.polyfit(kept[:, 0], kept[:, 1], 1)
    residual = kept[:, 1] - (slope * kept[:, 0] + intercept)
    r2 = 1 - (residual**2).sum() / ((kept[:, 1] - kept[:, 1].mean()) ** 2).sum()
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}


def r_ce_curve(scale: float) -> dict[int, float]:
    """A decreasing R_ce(k) over the image's bands, 0 at the top band."""
    top = (INPUT_SIZE - 1) // 2
    return {k: 0.0 if k == top else scale * math.exp(-k / 2) for k in range(top + 1)}


def spectrum_frame(scale: float) -> pd.DataFrame:
    curve = r_ce_curve(scale)
    k = list(curve)
    label = [1.0 / (1 + b) ** 2 for b in k]
    pred = [1.0 / (1 + b) ** 1.5 for b in k]
    return pd.DataFrame(
        {
            "k": k,
            "band_profile": [0.01] * len(k),
            "r_ce": [curve[b] for b in k],
            "label_magnitude": label,
            "pred_magnitude": pred,
            "label_magnitude_norm": [v / max(label) for v in label],
            "pred_magnitude_norm": [v / max(pred) for v in pred],
        }
    )


# --------------------------------------------------------------------- CSV


def csv_rows() -> list[dict[str, Any]]:
    rows = []
    for dataset, scale in DATASETS.items():
        curve = r_ce_curve(scale)
        for s in LRGS:
            r = curve[(s - 1) // 2]  # the reference's row too: its own band's R_ce
            rows.append(
                {
                    "model": "dan",
                    "dataset": dataset,
                    "prune_rate": 0.0,
                    "lrg": s,
                    "miou": 0.8 * (1 - SLOPE * (r - curve[REF_BAND])),
                    "gflops": 1.0 + 0.05 * s,
                    "r_ce": r,
                }
            )
    return rows


def test_analyze_from_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs.csv"
    pd.DataFrame(csv_rows()).to_csv(runs, index=False)
    out = tmp_path / "out"
    assert main(["analyze", "--runs-csv", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("estimator.json", "optimal_lrg.csv", "report.md", "report.html"):
        assert (out / name).is_file(), name
    est = Estimator.from_json(out / "estimator.json")
    points = [p for scale in DATASETS.values() for p in truncation_points(scale)]
    fit = expected_fit(points)
    assert est.slope == pytest.approx(fit["slope"], abs=1e-9)
    assert est.intercept == pytest.approx(fit["intercept"], abs=1e-9)
    assert est.r2 == pytest.approx(fit["r2"], abs=1e-9)
    optimal = pd.read_csv(out / "optimal_lrg.csv")
    assert list(optimal.columns) == [
        "model",
        "dataset",
        "prune_rate",
        "lrg",
        "gflops",
        "miou",
        "fpi",
    ]
    assert len(optimal) == 2
    html = (out / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html
    markdown = (out / "report.md").read_text()
    assert "figures/drops.png" in markdown and (out / "figures" / "drops.png").is_file()
    assert "Leave-one-dataset-out" in markdown
    assert "synthetic-fine" in printed and f"estimator: drop = {est.slope:.4f}" in printed


def test_analyze_csv_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame([{"model": "dan", "dataset": "voc", "lrg": 17}]).to_csv(bad, index=False)
    assert main(["analyze", "--runs-csv", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "prune_rate, miou, gflops" in err
    rows = csv_rows()
    rows[3]["miou"] = "high"
    pd.DataFrame(rows).to_csv(bad, index=False)
    assert main(["analyze", "--runs-csv", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "line 5, column 'miou'" in capsys.readouterr().err


# --------------------------------------------------------------------- MLflow store


@dataclass
class Store:
    uri: str
    experiment: str
    references: dict[str, str] = field(default_factory=dict)  # dataset -> reference run id
    trial_ids: list[str] = field(default_factory=list)


def _log_run(
    client: Any,
    experiment_id: str,
    trial: str,
    config: dict[str, Any],
    metrics: dict[str, float],
    spectrum: pd.DataFrame | None,
    tmp: Path,
    status: str = "FINISHED",
) -> str:
    from mlflow.entities import Metric, Param

    from trainables.config import TrialConfig
    from trainables.run_schema import to_params

    tags = {
        "spectral_sweep.sweep": "sweep",
        "spectral_sweep.trial_id": trial,
        "spectral_sweep.space": "test",
        "spectral_sweep.strategy": "exhaustive",
        "spectral_sweep.role": "trial",
    }
    run = client.create_run(experiment_id, run_name=trial, tags=tags)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in to_params(TrialConfig.from_dict(config)).items()]
    client.log_batch(
        run_id,
        params=params,
        metrics=[Metric(k, float(v), 0, 1) for k, v in metrics.items()],
    )
    if spectrum is not None:
        folder = tmp / trial
        folder.mkdir()
        spectrum.to_csv(folder / "spectrum.csv", index=False)
        client.log_artifact(run_id, str(folder / "spectrum.csv"))
    client.set_terminated(run_id, status=status)
    return str(run_id)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An experiment with LRG sweeps on two data sets, an annotation sweep, a failed run and a
    finished run without mIoU."""
    from mlflow import MlflowClient

    from analysis.mlflow_runs import quiet_mlflow_logs
    from trainables.spectral import paper_bands

    quiet_mlflow_logs()
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sweep", artifact_location=(root / "artifacts").as_uri())
    bands = sorted(set(paper_bands(INPUT_SIZE).values()))
    result = Store(uri, "sweep")
    base = {"model": "deeplabv3plus", "backbone": "resnet18", "input_size": INPUT_SIZE}
    base |= {"num_classes": 4, "prune_rate": 0.0, "decoder_prune_rate": 0.0}

    def metrics(scale: float, miou: float, s: int) -> dict[str, float]:
        curve = r_ce_curve(scale)
        gflops = 0.5 + 0.02 * s
        values = {"miou": miou, "gflops": gflops, "fpi": gflops / miou, "epoch": 1.0}
        values |= {"lrg": s, "native_lrg": NATIVE}
        return values | {f"r_ce_nu{nu}": curve[nu] for nu in bands}

    n = 0
    for dataset, scale in DATASETS.items():
        curve = r_ce_curve(scale)
        for s in LRGS:
            miou = 0.8 * (1 - SLOPE * (curve[(s - 1) // 2] - curve[REF_BAND]))
            config = base | {"dataset": dataset, "lrg": None if s == NATIVE else s}
            trial = f"t{n:03d}"
            n += 1
            run_id = _log_run(
                client, exp, trial, config, metrics(scale, miou, s), spectrum_frame(scale), root
            )
            result.trial_ids.append(run_id)
            if s == NATIVE:
                result.references[dataset] = run_id
    scale = DATASETS["synthetic-smooth"]
    for nu in (32, 4, 2):  # block-wise labels; 32 is pixel-wise at 65 (the reference)
        miou = 0.75 * (1 - SLOPE * r_ce_curve(scale)[nu])
        config = base | {"dataset": "synthetic-smooth", "annotation_nu_max": nu}
        trial = f"t{n:03d}"
        n += 1
        run_id = _log_run(
            client, exp, trial, config, metrics(scale, miou, NATIVE), spectrum_frame(scale), root
        )
        result.trial_ids.append(run_id)
    failed = base | {"dataset": "synthetic-smooth", "lrg": 7}
    _log_run(client, exp, "t900", failed, {"gflops": 0.6}, None, root, status="FAILED")
    no_miou = base | {"dataset": "synthetic-fine", "lrg": 7}
    _log_run(client, exp, "t901", no_miou, {"gflops": 0.6}, None, root)
    client.create_experiment("empty", artifact_location=(root / "empty").as_uri())
    return result


def _trial_state(uri: str, run_ids: list[str]) -> list[tuple[Any, ...]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    out = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        artifacts = sorted(a.path for a in client.list_artifacts(run_id))
        out.append((run.data.params, run.data.metrics, run.data.tags, run.info.status, artifacts))
    return out


@pytest.mark.slow
def test_analyze_from_mlflow(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    before = _trial_state(store.uri, store.trial_ids)
    out = tmp_path / "out"
    argv = ["analyze", "--tracking-uri", store.uri, "--experiment", store.experiment]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 unfinished run" in captured.err and "1 run(s) with NaN mIoU" in captured.err
    est = Estimator.from_json(out / "estimator.json")
    # truncation groups: references at (R_ce(8), 0); annotation: its pixel-wise reference at
    # band 32, the image's own band, where R_ce is 0
    annotation = [(r_ce_curve(0.6)[nu], SLOPE * r_ce_curve(0.6)[nu]) for nu in (32, 4, 2)]
    fit = expected_fit(
        [p for scale in DATASETS.values() for p in truncation_points(scale)] + annotation
    )
    assert est.slope == pytest.approx(fit["slope"], abs=1e-9)
    assert est.intercept == pytest.approx(fit["intercept"], abs=1e-9)
    assert est.r2 == pytest.approx(fit["r2"], abs=1e-9)
    assert est.fitted_on["kinds"] == ["annotation", "truncation"]
    assert set(est.fitted_on["datasets"]) == set(DATASETS)
    optimal = pd.read_csv(out / "optimal_lrg.csv")
    assert sorted(optimal["dataset"]) == sorted(DATASETS)
    html = (out / "report.html").read_text()
    assert html.count("<img") == 6  # spectra, mIoU-FLOPs, FPI, drops, Pareto, the budget curve
    assert (out / "figures" / "spectra.png").is_file()
    assert "spectrum.csv" in (out / "report.md").read_text()  # curves read from the artifacts

    client = MlflowClient(tracking_uri=store.uri)
    exp = client.get_experiment_by_name(store.experiment)
    assert exp is not None
    analysis_runs = client.search_runs(
        [exp.experiment_id], filter_string="tags.`spectral_sweep.role` = 'analysis'"
    )
    assert len(analysis_runs) == 1
    run = analysis_runs[0]
    assert run.info.run_name == "analysis" and run.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"estimator.json", "optimal_lrg.csv", "report.md", "report.html", "figures"} <= logged
    assert run.data.metrics["estimator_slope"] == pytest.approx(est.slope)
    assert _trial_state(store.uri, store.trial_ids) == before  # trial runs untouched

    # a second analysis reads the same trials (the analysis run is not a trial)
    assert main([*argv, "--out", str(tmp_path / "again"), "--no-log"]) == 0
    again = Estimator.from_json(tmp_path / "again" / "estimator.json")
    assert again == est


@pytest.mark.slow
def test_analyze_unknown_or_empty_experiment(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["analyze", "--tracking-uri", store.uri, "--out", str(tmp_path / "o")]
    assert main([*argv, "--experiment", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and "sweep" in err and err.count("\n") == 1
    assert main([*argv, "--experiment", "empty"]) == 2
    assert "has no runs" in capsys.readouterr().err


@pytest.mark.slow
def test_plan_from_mlflow(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainables.flops import architecture_flops

    estimator = Estimator(SLOPE, 0.0, 1.0, 10)
    path = estimator.to_json(tmp_path / "estimator.json")
    ref = store.references["synthetic-fine"]
    argv = ["plan", "--estimator", str(path), "--tracking-uri", store.uri]
    assert main([*argv, "--run-id", ref, "--lrgs", "17", "9", "5", "3", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    rows = {r["lrg"]: r for r in plan["rows"]}
    assert sorted(rows) == [3, 5, 9, 17]
    curve = r_ce_curve(DATASETS["synthetic-fine"])
    assert rows[9]["r_ce"] == pytest.approx(curve[4])  # from the spectrum.csv artifact
    assert rows[17]["predicted_drop"] == 0.0 and rows[17]["predicted_miou"] == pytest.approx(0.8)
    assert rows[17]["r_ce"] == pytest.approx(curve[REF_BAND]) and curve[REF_BAND] > 0
    assert rows[5]["predicted_miou"] == pytest.approx(0.8 * (1 - SLOPE * curve[2]))
    flops = architecture_flops("deeplabv3plus", "resnet18", INPUT_SIZE, 4, 9, 0.0, 0.0).gflops
    assert rows[9]["gflops"] == pytest.approx(flops)
    assert rows[17]["gflops"] > rows[9]["gflops"] > rows[3]["gflops"]
    fpi = {s: r["predicted_fpi"] for s, r in rows.items() if r["feasible"]}
    assert plan["recommended"] == min(fpi, key=lambda s: fpi[s])
    assert plan["reference_lrg"] == NATIVE and plan["dataset"] == "synthetic-fine"

    # a tight max drop leaves only the reference and small-R_ce grids
    assert main([*argv, "--run-id", ref, "--lrgs", "17", "9", "5", "3", "--max-drop", "0.01",
                 "--json"]) == 0  # fmt: skip
    tight = json.loads(capsys.readouterr().out)
    assert {r["lrg"] for r in tight["rows"] if r["feasible"]} == {
        s for s, r in rows.items() if r["predicted_drop"] <= 0.01
    }

    # default candidates (the paper's sizes at 65) and one plan per reference of the experiment
    assert main([*argv, "--experiment", store.experiment, "--estimator", "paper"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "warning: experiment 'sweep': 1 unfinished run" in captured.err
    assert text.count("recommended LRG") == 2
    for s in (17, 13, 11, 9, 7, 5, 3):
        assert f"\n{s} " in text


@pytest.mark.slow
def test_plan_bad_estimator_and_run(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "e.json"
    bad.write_text(json.dumps({"intercept": 0.1}))
    argv = ["plan", "--tracking-uri", store.uri, "--run-id", store.references["synthetic-fine"]]
    assert main([*argv, "--estimator", str(bad)]) == 2
    assert "missing field 'slope'" in capsys.readouterr().err
    argv = ["plan", "--estimator", "paper", "--tracking-uri", store.uri, "--run-id"]
    assert main([*argv, "abc"]) == 2
    assert "no run 'abc'" in capsys.readouterr().err
    assert main([*argv, store.trial_ids[1]]) == 2  # LRG 13 of the smooth sweep
    assert "not at its native grid 17" in capsys.readouterr().err
    assert main([*argv, store.trial_ids[-1]]) == 2  # annotation nu_max 2
    assert "block-wise labels" in capsys.readouterr().err


def test_analyze_without_fittable_points_still_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only reference runs: no line can be fitted; the optimum and report are still written."""
    runs = tmp_path / "runs.csv"
    rows = [row for row in csv_rows() if row["lrg"] == NATIVE]
    pd.DataFrame(rows).to_csv(runs, index=False)
    out = tmp_path / "out"
    assert main(["analyze", "--runs-csv", str(runs), "--out", str(out)]) == 0
    assert "warning: no estimator fitted" in capsys.readouterr().err
    assert not (out / "estimator.json").exists()
    assert (out / "optimal_lrg.csv").is_file() and (out / "report.html").is_file()
    assert "No estimator fitted" in (out / "report.md").read_text()
