"""The CLI round trips on a real MLflow SQLite store written by the sweep's own writers:
``runs --csv`` -> ``analyze --runs-csv`` (the same analysis as from MLflow), the optimal
configurations as a space file that ``sweep --space-file --dry-run`` loads, and ``plan``'s
``train`` command and ``--out`` space file."""

from __future__ import annotations

import dataclasses
import io
import json
import shlex
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from fixtures_data import spectrum_frame

from analysis.runs_export import EXPORT_COLUMNS
from orchestrator import store, uris
from orchestrator.cli import build_parser, main
from orchestrator.commands.train import config_from_args
from orchestrator.mlflow_callback import numeric_metrics
from search_spaces import load_space_file
from trainables.config import TrialConfig
from trainables.grids import band_of_lrg, paper_bands
from trainables.run_schema import Role, r_ce_point_band

EXPERIMENT = "trip"
INPUT = 65  # native grid 17, image band 32
LRGS = (17, 9, 5, 3)
GFLOPS = (2.0, 1.2, 1.0, 0.95)
#: Per data set: the reference's band profile decays as base**k (R_ce(k) = base**(k + 1)), and
#: the mIoU at each LRG.
DATASETS = {
    "synthetic-smooth": (0.5, (0.80, 0.78, 0.72, 0.62)),
    "synthetic-fine": (0.6, (0.50, 0.47, 0.40, 0.30)),
}


def base_config(dataset: str, lrg: int) -> TrialConfig:
    return TrialConfig(
        model="dan",
        backbone="resnet18",
        dataset=dataset,
        input_size=INPUT,
        num_classes=4,
        lrg=lrg,
        epochs=2,
        lr=0.05,
        train_length=8,
        eval_length=4,
    )


def write_sweep(uri: str) -> dict[str, str]:
    """Trial runs of both data sets (references with spectrum.csv), one FAILED run and one
    prediction run, through the sweep's writers; returns the reference run ids by data set."""
    client = store.make_client(uri)
    experiment_id = store.ensure_experiment(client, EXPERIMENT, uri)
    tags = store.sweep_tags(EXPERIMENT, "trip", "exhaustive", Role.TRIAL)
    references = {}
    for dataset, (base, mious) in DATASETS.items():
        frame = spectrum_frame(INPUT // 2 + 1, base)
        for lrg, miou, gflops in zip(LRGS, mious, GFLOPS, strict=True):
            cfg = base_config(dataset, lrg)
            run_id, _ = store.start_trial_run(client, experiment_id, cfg.key, cfg, tags)
            metrics = {"epoch": 1.0, "miou": miou, "gflops": gflops, "fpi": gflops / miou}
            for nu in paper_bands(INPUT).values():
                metrics[f"r_ce_nu{nu}"] = float(frame["r_ce"][nu])
            metrics["r_ce_lrg"] = float(frame["r_ce"][band_of_lrg(lrg)])
            store.log_metrics(client, run_id, numeric_metrics(metrics), step=1)
            if lrg == 17:  # what analysis reads of a run's artifacts: the reference's spectrum
                with tempfile.TemporaryDirectory() as tmp:
                    store.write_trial_artifacts(tmp, frame, [miou] * 4)
                    store.log_trial_artifacts(client, run_id, tmp)
                references[dataset] = run_id
            store.end_trial_run(client, run_id, "FINISHED")
    failed = base_config("synthetic-smooth", 7)
    run_id, _ = store.start_trial_run(client, experiment_id, "failed", failed, tags)
    store.end_trial_run(client, run_id, "FAILED", error="RuntimeError: out of memory")
    predicted = dataclasses.replace(base_config("synthetic-fine", 7))
    prediction_tags = store.sweep_tags(EXPERIMENT, "trip", "estimate", Role.PREDICTION)
    store.log_prediction_run(
        client, experiment_id, predicted, {"predicted_miou": 0.4, "gflops": 0.97}, prediction_tags
    )
    return references


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    uri = uris.default_tracking_uri(tmp_path_factory.mktemp("trip"))
    return uri, write_sweep(uri)


def test_runs_csv_is_analyzed_as_the_experiment(
    sweep: tuple[str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = sweep
    # from MLflow first: it also logs an "analysis" run, which the CSV then holds
    from_mlflow = tmp_path / "mlflow"
    argv = ["analyze", "--experiment", EXPERIMENT, "--tracking-uri", uri]
    assert main([*argv, "--out", str(from_mlflow)]) == 0
    mlflow_out = capsys.readouterr().out

    assert main(["runs", "--experiment", EXPERIMENT, "--tracking-uri", uri, "--csv"]) == 0
    text = capsys.readouterr().out
    csv = tmp_path / "runs.csv"
    csv.write_text(text)
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) == 8 + 1 + 1 + 1  # trials, the failed run, the prediction, the analysis
    # the analyze columns first, R_ce points by band (nu3 < nu4 < nu32, not as text)
    points = [c for c in frame.columns if r_ce_point_band(c) is not None]
    assert [r_ce_point_band(c) for c in points] == sorted(paper_bands(INPUT).values())
    assert list(frame.columns[: 7 + len(points) + 12]) == [
        *EXPORT_COLUMNS[:7],
        *points,
        *EXPORT_COLUMNS[7:],
    ]
    metric_points = [c for c in frame.columns if c.startswith("metrics.r_ce_nu")]
    assert metric_points == [f"metrics.{c}" for c in points]
    assert {"params.lrg_effective", "metrics.miou", "tags.spectral_sweep.role"} <= set(frame)

    from_csv = tmp_path / "csv"
    assert main(["analyze", "--runs-csv", str(csv), "--out", str(from_csv)]) == 0
    captured = capsys.readouterr()
    assert "1 unfinished run(s)" in captured.err  # the FAILED run, as from MLflow
    for name in ("optimal_lrg.csv", "drops.csv"):
        mine, theirs = (pd.read_csv(d / name) for d in (from_csv, from_mlflow))
        same = [c for c in theirs.columns if "uri" not in c]  # where the spectra were read
        pd.testing.assert_frame_equal(mine[same], theirs[same])
    fitted = [json.loads((d / "estimator.json").read_text()) for d in (from_csv, from_mlflow)]
    for key in ("slope", "intercept", "r2", "n"):
        assert fitted[0][key] == pytest.approx(fitted[1][key])
    assert mlflow_out.splitlines()[:3] == captured.out.splitlines()[:3]  # the optimal table

    # both wrote the optimal configurations, whole (the CSV carries the params), and the rerun
    for out, printed in ((from_csv, captured.out), (from_mlflow, mlflow_out)):
        path = out / "optimal_space.yaml"
        assert f"rerun: spectral-sweep sweep --space-file {path}" in printed
        trials = load_space_file(path).trials()
        assert {t.key for t in trials} == {base_config(d, 5).key for d in DATASETS}
        assert "not in the source" not in path.read_text()


def test_optimal_space_loads_in_a_dry_run(
    sweep: tuple[str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = sweep
    out = tmp_path / "report"
    argv = ["analyze", "--experiment", EXPERIMENT, "--tracking-uri", uri, "--no-log"]
    assert main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    space = out / "optimal_space.yaml"
    assert main(["sweep", "--space-file", str(space), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "space trip-optimal: 2 trials" in printed and "total:" in printed


def test_a_csv_without_configs_writes_what_it_knows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = []
    for dataset, (_, mious) in DATASETS.items():
        for lrg, miou, gflops in zip(LRGS, mious, GFLOPS, strict=True):
            rows.append({"model": "dan", "dataset": dataset, "prune_rate": 0.0, "lrg": lrg})
            rows[-1] |= {"miou": miou, "gflops": gflops, "input_size": INPUT}
    csv = tmp_path / "plain.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main(["analyze", "--runs-csv", str(csv), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    path = out / "optimal_space.yaml"
    assert f"rerun: spectral-sweep sweep --space-file {path}" in captured.out
    warning = [line for line in captured.err.splitlines() if "optimal_space.yaml" in line]
    assert len(warning) == 1 and "missing" in warning[0] and "backbone" in warning[0]
    assert "not in the source" in path.read_text()
    trials = load_space_file(path).trials()
    assert {(t.dataset, t.effective_lrg, t.input_size) for t in trials} == {
        ("synthetic-smooth", 5, INPUT),
        ("synthetic-fine", 5, INPUT),
    }


def test_plan_prints_the_train_command_and_writes_the_trial(
    sweep: tuple[str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, references = sweep
    out = tmp_path / "recommended.yaml"
    argv = ["plan", "--estimator", "paper", "--tracking-uri", uri]
    assert main([*argv, "--run-id", references["synthetic-smooth"], "--out", str(out)]) == 0
    captured = capsys.readouterr()
    header = next(line for line in captured.out.splitlines() if line.startswith("lrg "))
    assert header.split()[3:5] == ["predicted_drop", "predicted_miou"]
    assert "predicted_fpi" in header.split() and "pred_drop" not in header
    # progress while counting FLOPs
    assert "counting FLOPs of 7 LRGs for dan/resnet18 at 65 (compact convention) ..." in (
        captured.err
    )
    assert "counted FLOPs in" in captured.err
    recommended = int(captured.out.split("recommended LRG: ")[1].split()[0])
    expected = base_config("synthetic-smooth", recommended)
    command = next(line for line in captured.out.splitlines() if line.startswith("train it: "))
    words = shlex.split(command.removeprefix("train it: "))
    assert words[:2] == ["spectral-sweep", "train"]
    assert config_from_args(build_parser().parse_args(words[1:])) == expected
    assert f"wrote {out} (1 trial); rerun: spectral-sweep sweep --space-file {out}" in (
        captured.out
    )
    assert load_space_file(out).trials() == (expected,)

    # --json carries the command; the plans of an experiment go to one file
    assert main([*argv, "--experiment", EXPERIMENT, "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    plans = json.loads(captured.out)
    assert all(p["train_command"].startswith("spectral-sweep train --model dan") for p in plans)
    assert "wrote" in captured.err  # stdout stays JSON
    assert len(load_space_file(out).trials()) == len(plans) == 2


def test_plan_out_is_checked_before_work(
    sweep: tuple[str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, references = sweep
    argv = ["plan", "--estimator", "paper", "--tracking-uri", uri, "--run-id"]
    for bad, message in (
        (tmp_path / "plan.toml", "YAML"),
        (tmp_path / "missing" / "plan.yaml", "does not exist"),
    ):
        assert main([*argv, references["synthetic-fine"], "--out", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_runs_table_uses_the_column_names_and_short_floats(
    sweep: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = sweep
    assert main(["runs", "--experiment", EXPERIMENT, "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {"prune_rate", "r_ce_lrg"} <= set(lines[0].split())  # no run sets annotation_nu_max
    assert not {"prune", "ann_nu"} & set(lines[0].split())
    decimals = [len(n) - 2 for line in lines[1:] for n in line.split() if n.startswith("0.")]
    assert decimals and max(decimals) <= 6  # 4 significant digits: 0.001953, not 0.0019531...


def test_runs_table_counts_epochs_done_and_help_names_the_csv_columns(
    sweep: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = sweep
    assert main(["runs", "--experiment", EXPERIMENT, "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    column = header.index("epochs")
    trials = [line.split() for line in lines[1:] if line.startswith("dan-")]
    finished = [row for row in trials if row[1] == "FINISHED"]
    assert len(finished) == 8
    # each logged epoch 1 (MLflow's step counts from 0) of its 2: 2 epochs done
    assert {row[column] for row in finished} == {"2"}

    with pytest.raises(SystemExit):
        main(["runs", "--help"])
    described = " ".join(capsys.readouterr().out.split())
    missing = [c for c in EXPORT_COLUMNS if c not in described]
    assert not missing, f"`runs --help` does not name {missing}"
