"""The estimate strategy: grouping a space (pure), the verdict on hand-made frames, and the whole
demo story (exhaustive sweep, estimate strategy, analysis, verdict, resume) on a real local Ray
with the smoke space."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.estimator import PAPER_ESTIMATOR
from analysis.references import ReferenceRun
from analysis.strategy import (
    ANNOTATION,
    TRUNCATION,
    estimate_groups,
    plan_group,
    reference_trials,
    verdict,
)
from search_spaces import get_space, space_of_trials
from trainables.config import TrialConfig
from trainables.errors import InputError

BASE = {"model": "dan", "backbone": "resnet18", "dataset": "synthetic-smooth", "input_size": 33}


def trial(**values: Any) -> dict[str, Any]:
    return {**BASE, **values}


def cfg(**values: Any) -> TrialConfig:
    return TrialConfig.from_dict(trial(**values))


# --------------------------------------------------------------------- grouping


def test_config_key_ignores_spelling_and_run_only_settings() -> None:
    native = cfg(lrg=9, num_threads=2).key
    assert native == cfg().key  # lrg 9 is the native grid at 33
    assert native == cfg(annotation_nu_max=16).key  # 16 = image band
    assert native != cfg(lrg=5).key
    assert native != cfg(annotation_nu_max=2).key


def test_groups_of_the_demo_space() -> None:
    groups = estimate_groups(get_space("demo").trials())
    kinds = [g.kind for g in groups]
    assert kinds.count(TRUNCATION) == 6 and kinds.count(ANNOTATION) == 2
    for group in groups:
        assert group.reference.canonical().lrg is None  # native grid
        assert not group.reference.uses_blockwise_labels
    # the annotation groups' pixel-wise references are truncation references too: 6 trainings
    assert len(reference_trials(groups)) == 6
    smooth = next(g for g in groups if g.kind == TRUNCATION and g.label.startswith("dan"))
    assert smooth.candidate_lrgs() == [17, 9, 5, 3]


def test_missing_native_trial_becomes_the_reference() -> None:
    groups = estimate_groups([cfg(lrg=5), cfg(lrg=3)])
    assert len(groups) == 1
    assert groups[0].reference.lrg == 9
    assert sorted(c.lrg for c in groups[0].candidates if c.lrg is not None) == [3, 5]


def test_annotation_group_reference_is_pixel_wise() -> None:
    groups = estimate_groups([cfg(annotation_nu_max=4), cfg(annotation_nu_max=2)])
    assert [g.kind for g in groups] == [ANNOTATION]
    assert groups[0].reference.annotation_nu_max is None
    assert len(groups[0].candidates) == 2


def test_single_trial_groups_predict_nothing() -> None:
    assert estimate_groups([cfg(), cfg(model="deeplabv3plus")]) == []
    with pytest.raises(InputError, match="no trials"):
        estimate_groups([])


def test_space_of_trials_holds_exactly_those_trials() -> None:
    refs = reference_trials(estimate_groups(get_space("demo").trials()))
    space = space_of_trials("demo-reference", [r.to_dict() for r in refs])
    assert space.trials() == tuple(refs)
    with pytest.raises(InputError, match="extra differs"):
        space_of_trials("x", [trial(extra={"length": 2}), trial(lrg=5)])


# --------------------------------------------------------------------- planning and verdict


def reference_run(**overrides: Any) -> ReferenceRun:
    values: dict[str, Any] = {
        "run_id": "ref",
        "model": "dan",
        "dataset": "synthetic-smooth",
        "backbone": "resnet18",
        "input_size": 33,
        "num_classes": 3,
        "prune_rate": 0.0,
        "decoder_prune_rate": 0.0,
        "lrg": 9,
        "miou": 0.8,
        "curve": {0: 0.9, 1: 0.5, 2: 0.1, 3: 0.02, 4: 0.0},
    }
    return ReferenceRun(**{**values, **overrides})


def test_truncation_plan_predicts_every_candidate() -> None:
    (group,) = estimate_groups([cfg(lrg=5), cfg(lrg=3)])
    planned = plan_group(group, reference_run(), PAPER_ESTIMATOR)
    table = planned.plan.table.set_index("lrg")
    assert list(table.index) == [9, 5, 3]
    drop5 = PAPER_ESTIMATOR.predict_drop(0.1)  # LRG 5 is band 2
    assert table.loc[5, "predicted_miou"] == pytest.approx(0.8 * (1 - drop5))
    assert table.loc[9, "predicted_drop"] == 0.0
    assert planned.plan.recommended in (9, 5, 3)
    assert planned.recommended_config is not None


def test_annotation_plan_recommends_the_coarsest_labels_within_max_drop() -> None:
    (group,) = estimate_groups([cfg(annotation_nu_max=3), cfg(annotation_nu_max=1)])
    planned = plan_group(group, reference_run(), PAPER_ESTIMATOR, max_drop=0.05)
    table = planned.plan.table.set_index("annotation_nu_max")
    assert table.loc[3, "predicted_drop"] == pytest.approx(PAPER_ESTIMATOR.predict_drop(0.02))
    assert table.loc[1, "predicted_drop"] == pytest.approx(PAPER_ESTIMATOR.predict_drop(0.5))
    assert planned.plan.recommended == 3  # band 1 loses 34% (> 5%)
    assert table["gflops"].nunique() == 1  # labels cost no FLOPs
    assert planned.recommended_config is None  # nothing to confirm by training


def measured(model: str, lrg: int, fpi: float) -> dict[str, Any]:
    """A prepared exhaustive-sweep row with a measured FPI."""
    return {"model": model, "dataset": "synthetic-smooth", "prune_rate": 0.0, "lrg": lrg} | {
        "fpi": fpi,
        "kind": TRUNCATION,
    }


def test_verdict_exact_picks_and_regret() -> None:
    groups = estimate_groups([cfg(lrg=5), cfg(lrg=3), cfg(model="deeplabv3plus", lrg=5)])
    plans = [plan_group(g, reference_run(model=g.reference.model), PAPER_ESTIMATOR) for g in groups]
    picks = {p.reference.model: p.plan.recommended for p in plans}
    # measured FPI chosen so dan's optimum is its pick and deeplabv3plus's is not
    fpi = {("dan", picks["dan"]): 1.0, ("deeplabv3plus", picks["deeplabv3plus"]): 3.0}
    rows = [
        measured(model, lrg, fpi.get((model, lrg), 2.0 if model == "dan" else 1.5))
        for model, lrgs in (("dan", [9, 5, 3]), ("deeplabv3plus", [9, 5]))
        for lrg in lrgs
    ]
    table = verdict(plans, pd.DataFrame(rows)).set_index("model")
    assert bool(table.loc["dan", "exact"]) and table.loc["dan", "regret"] == 0.0
    assert not bool(table.loc["deeplabv3plus", "exact"])
    assert table.loc["deeplabv3plus", "regret"] == pytest.approx(3.0 / 1.5 - 1.0)


def test_verdict_of_an_unmeasured_pick_has_nan_regret() -> None:
    (group,) = estimate_groups([cfg(lrg=5), cfg(lrg=3)])
    planned = plan_group(group, reference_run(), PAPER_ESTIMATOR)
    other = [lrg for lrg in (9, 5, 3) if lrg != planned.plan.recommended]
    rows = pd.DataFrame([measured("dan", lrg, float(lrg)) for lrg in other])
    (row,) = verdict([planned], rows).to_dict("records")
    assert not row["exact"] and math.isnan(row["regret"])


def test_verdict_counts_a_pick_that_ties_the_optimum_as_exact() -> None:
    """Ties in measured FPI name the larger LRG as the optimum; a pick with the same FPI at
    another LRG is an optimum too (regret 0), so it is exact."""
    (group,) = estimate_groups([cfg(lrg=5), cfg(lrg=3)])
    planned = plan_group(group, reference_run(), PAPER_ESTIMATOR)
    pick, larger = planned.plan.recommended, 9  # the reference's grid names the tie
    assert pick is not None and pick < larger
    rows = [measured("dan", lrg, 1.0 if lrg in (pick, larger) else 2.0) for lrg in (9, 5, 3)]
    (row,) = verdict([planned], pd.DataFrame(rows)).to_dict("records")
    assert row["optimal_lrg"] == larger and row["picked_lrg"] == pick
    assert row["exact"] and row["regret"] == 0.0


def test_a_reference_at_miou_0_is_not_planned_from(tmp_path: Path) -> None:
    """The live strategies read each group's reference back from MLflow (a real SQLite store
    here): a reference that trained to mIoU 0 gives nothing to plan from (every drop would
    divide by 0), and says so, as does one that did not finish."""
    from mlflow import MlflowClient

    from orchestrator.settings import SweepSettings
    from orchestrator.strategy import reference_of
    from trainables.run_schema import Metric, Role, Tag

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("zero")
    (group,) = estimate_groups([cfg(lrg=5), cfg(lrg=3)])
    settings = SweepSettings(space="smoke", name="zero", tracking_uri=uri)
    assert reference_of(settings, client, experiment_id, group) == (
        None,
        "the reference trial did not finish",
    )
    tags = {Tag.CONFIG_KEY: group.reference_key, Tag.ROLE: Role.REFERENCE}
    run = client.create_run(experiment_id, tags=tags)
    client.log_metric(run.info.run_id, Metric.MIOU, 0.0)
    client.set_terminated(run.info.run_id, "FINISHED")
    assert reference_of(settings, client, experiment_id, group) == (
        None,
        "the reference trained to mIoU 0",
    )


# --------------------------------------------------------------------- the whole story on Ray


@pytest.mark.ray
@pytest.mark.slow
def test_demo_story_on_the_smoke_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from analysis.mlflow_runs import runs_frame
    from orchestrator import store
    from orchestrator.cli import main
    from orchestrator.uris import default_tracking_uri

    if ray.is_initialized():
        ray.shutdown()
    args = ["demo", "--space", "smoke", "--dir", str(tmp_path), "--confirm", "--quiet"]
    ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        assert main(args) == 0
        assert signal.getsignal(signal.SIGINT) is ctrl_c  # not Tune's, which would swallow it
        out = capsys.readouterr().out
        assert "== verdict ==" in out
        # smoke: 4 trials in 2 groups (LRG 9 native, 5): 2 references + confirmations
        uri = default_tracking_uri(tmp_path)
        frame = runs_frame(uri, "smoke-estimate")
        roles = frame["tags.spectral_sweep.role"].value_counts().to_dict()
        assert roles["reference"] == 2 and roles["prediction"] == 2
        confirmed = roles.get("confirm", 0)
        assert f"trainings: exhaustive 4, paper {2 + confirmed} (" in out
        assert "adaptive (replayed on the exhaustive sweep): exact picks" in out
        assert set(frame["status"]) == {"FINISHED"}
        check_predictions(uri, frame, tmp_path / "downloads")
        assert not ray.is_initialized()  # the demo stopped the Ray it started
        report = tmp_path / "smoke-report"
        assert (report / "report.html").exists() and (report / "estimator.json").exists()
        html = (report / "report.html").read_text()
        assert "paper (estimate) strategy: exact picks" in html  # the verdict is in the report
        # the figures are in both reports and logged to the analysis run
        figures = {p.name for p in (report / "figures").glob("*.png")}
        assert {"spectra.png", "miou_flops.png", "fpi.png"} <= figures
        markdown = (report / "report.md").read_text()
        assert all(f"figures/{name})" in markdown for name in figures)
        assert html.count("data:image/png;base64,") == len(figures)
        everything = runs_frame(uri, "smoke")
        analysis_run = everything.loc[everything["tags.spectral_sweep.role"] == "analysis"]
        logged = store.make_client(uri).list_artifacts(analysis_run["run_id"].iloc[0], "figures")
        assert {Path(a.path).name for a in logged} == figures
        table = pd.read_csv(report / "verdict.csv")
        assert len(table) == 2 and set(table["optimal_lrg"]) <= {9, 5}
        assert (table["exact"] == (table["picked_lrg"] == table["optimal_lrg"])).all()

        # a driver killed while logging them left a prediction and the analysis RUNNING
        client = store.make_client(uri)
        client.update_run(analysis_run["run_id"].iloc[0], status="RUNNING")
        client.update_run(frame.loc[frame["tags.spectral_sweep.role"] == "prediction", "run_id"]
                          .iloc[0], status="RUNNING")  # fmt: skip

        # again: both sweeps resume, nothing is trained or logged twice, the unfinished are redone
        assert main(args) == 0
        assert "resuming sweep 'smoke'" in capsys.readouterr().out
        for name, count in (
            ("smoke", 6),
            ("smoke-estimate", len(frame)),
        ):  # 4 trials, analysis, sweep
            assert len(runs_frame(uri, name)) == count, name
            assert set(runs_frame(uri, name)["status"]) == {"FINISHED"}, name
        analysis_run = runs_frame(uri, "smoke").query("`tags.spectral_sweep.role` == 'analysis'")
        logged = client.list_artifacts(analysis_run["run_id"].iloc[0], "figures")
        assert {Path(a.path).name for a in logged} == figures
    finally:
        ray.shutdown()


def check_predictions(uri: str, frame: pd.DataFrame, downloads: Path) -> None:
    """Prediction runs: LRG 5 of each group, linked to a reference with plan_lrg.json
    (downloaded into ``downloads``, not a temporary folder left behind)."""
    from orchestrator import store

    client = store.make_client(uri)
    downloads.mkdir(exist_ok=True)
    references = frame.loc[frame["tags.spectral_sweep.role"] == "reference"]
    predictions = frame.loc[frame["tags.spectral_sweep.role"] == "prediction"]
    assert set(predictions["params.lrg"]) == {"5"}
    assert set(predictions["tags.spectral_sweep.reference_run_id"]) == set(references["run_id"])
    assert (predictions["metrics.predicted_miou"] > 0).all()
    assert predictions["metrics.miou"].isna().all()  # nothing was measured for them
    for run_id in references["run_id"]:
        got = client.download_artifacts(run_id, "plan_lrg.json", str(downloads))
        plan = json.loads(Path(got).read_text())
        assert [row["lrg"] for row in plan["rows"]] == [9, 5]
        assert plan["estimator"]["slope"] == pytest.approx(0.6725)
        recommended = frame.loc[frame["run_id"] == run_id, "metrics.recommended_lrg"].iloc[0]
        assert recommended == plan["recommended"]
