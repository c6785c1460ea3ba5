"""Label-only prediction (``plan --labels-only``, ``analysis.labels_only``) on tiny synthetic data.

The ideal predictor's R_ce is checked against a numpy re-computation of DESIGN.md's
definitions, the backtest against a hand-made sweep whose right answers are known, and the CLI
end to end.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.estimator import PAPER_ESTIMATOR
from analysis.labels_only import label_curves, labels_only_plan
from analysis.labels_only_backtest import labels_only_backtest, spearman
from analysis.runs import AnalysisWarning, normalise
from orchestrator.cli import main
from trainables.data import build_dataset
from trainables.spectral.ideal import (
    IdealSpectrumAccumulator,
    ideal_ce,
    temperature_for_ce,
)

SIZE = 33  # input; native grid 9
CLASSES = 3


def numpy_curves(labels: list[np.ndarray], classes: int, t: float) -> tuple[np.ndarray, ...]:
    """R_ce and energy above per band of the ideal predictor ``T * onehot``, by hand (numpy)."""
    height, width = labels[0].shape
    fy = np.abs(np.round(np.fft.fftfreq(height) * height)).astype(int)
    fx = np.abs(np.round(np.fft.fftfreq(width) * width)).astype(int)
    band = np.maximum(fy[:, None], fx[None, :])
    profile = np.zeros(max(height, width) // 2 + 1)
    energy = np.zeros_like(profile)
    ce_sum, n_total = 0.0, 0
    for label in labels:
        valid = label != 255
        onehot = np.stack([(label == c) & valid for c in range(classes)]).astype(np.float64)
        logits = t * onehot
        lse = np.log(np.exp(logits).sum(0))
        yhat = lse[None] - logits
        ce_sum += float((onehot * yhat).sum())
        n_total += int(valid.sum())
        b = np.fft.fft2(onehot)
        cross = (np.conj(b) * np.fft.fft2(yhat)).real.sum(0) / (height * width)
        np.add.at(profile, band, cross)
        np.add.at(energy, band, (np.abs(b) ** 2).sum(0) / (height * width))
    profile /= n_total
    ce = ce_sum / n_total
    assert math.isclose(profile.sum(), ce, rel_tol=1e-9)  # Parseval
    r_ce = np.abs(1.0 - np.cumsum(profile) / ce)
    r_ce[-1] = 0.0
    above = (energy.sum() - np.cumsum(energy)) / energy.sum()
    above[-1] = 0.0
    return r_ce, above, np.array([ce])


def test_ideal_predictor_curve_matches_numpy_by_hand() -> None:
    """(a) ``label_curves`` on two real synthetic labels equals a numpy FFT re-computation."""
    curves = label_curves(
        "synthetic-fine", input_size=SIZE, num_classes=CLASSES, options={"length": 2}
    )
    dataset = build_dataset(
        "synthetic-fine", split="val", input_size=SIZE, num_classes=CLASSES, length=2
    )
    labels = [dataset.label(i).numpy() for i in range(2)]
    t = temperature_for_ce(CLASSES)  # the default: CE 0.1
    assert curves.temperature == pytest.approx(t) and curves.ideal_ce == pytest.approx(0.1)
    r_ce, above, ce = numpy_curves(labels, CLASSES, t)
    assert ce[0] == pytest.approx(0.1, rel=1e-9)
    assert sorted(curves.r_ce) == list(range(SIZE // 2 + 1))
    np.testing.assert_allclose([curves.r_ce[k] for k in sorted(curves.r_ce)], r_ce, rtol=1e-9)
    np.testing.assert_allclose(
        [curves.energy_above[k] for k in sorted(curves.energy_above)], above, atol=1e-12
    )
    # no ignored pixel: R_label = T / CE(T) * energy above, exactly
    np.testing.assert_allclose(r_ce, t / ideal_ce(CLASSES, t) * above, rtol=1e-9, atol=1e-12)


def test_ideal_predictor_with_ignored_pixels_matches_numpy() -> None:
    """(a) with ignored pixels (their logits all 0) and an explicit temperature."""
    dataset = build_dataset(
        "synthetic-smooth", split="val", input_size=SIZE, num_classes=CLASSES, length=2
    )
    labels = [dataset.label(i).clone() for i in range(2)]
    labels[0][:5, :] = 255
    labels[1][10:14, 3:20] = 255
    acc = IdealSpectrumAccumulator(CLASSES, temperature=2.5)
    acc.update(labels[0][None])
    acc.update(labels[1][None])
    r_ce, above, _ = numpy_curves([x.numpy() for x in labels], CLASSES, 2.5)
    np.testing.assert_allclose([acc.r_ce()[k] for k in range(len(r_ce))], r_ce, rtol=1e-9)
    np.testing.assert_allclose([acc.energy_above()[k] for k in range(len(above))], above)


def test_finer_labels_have_larger_label_curves() -> None:
    """(b) synthetic-fine labels lose more CE (and energy) at every band limit than smooth."""
    common: dict[str, Any] = {"input_size": SIZE, "num_classes": CLASSES, "options": {"length": 4}}
    smooth = label_curves("synthetic-smooth", **common)
    fine = label_curves("synthetic-fine", **common)
    for nu in (1, 2, 4, 8):
        assert fine.r_ce[nu] > smooth.r_ce[nu] > 0
        assert fine.energy_above[nu] > smooth.energy_above[nu] > 0
    assert fine.r_ce[SIZE // 2] == 0.0 == smooth.r_ce[SIZE // 2]


def test_spearman_matches_definition() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))
    # ties get average ranks: ranks (1.5, 1.5, 3) vs (1, 2, 3)
    assert spearman([0, 0, 1], [1, 2, 3]) == pytest.approx(
        np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1]
    )


def _runs() -> pd.DataFrame:
    """Three unpruned LRG sweeps (native 17) with the same measurements, one per data set."""
    miou = {17: 0.80, 9: 0.78, 5: 0.70, 3: 0.50}  # FPI 12.5, 7.69, 5.71, 7.0: optimum 5
    gflops = {17: 10.0, 9: 6.0, 5: 4.0, 3: 3.5}
    rows = [
        {
            "model": "m",
            "dataset": dataset,
            "prune_rate": 0.0,
            "lrg": s,
            "miou": miou[s],
            "gflops": gflops[s],
            "native_lrg": 17,
            "input_size": 65,
            "run_id": f"{dataset}-{s}",
        }
        for dataset in ("good", "pessimistic", "uncurved")
        for s in (17, 9, 5, 3)
    ]
    return normalise(pd.DataFrame(rows), "test")


def test_backtest_on_a_hand_made_sweep() -> None:
    """(c) a curve whose paper-estimator drops match the measured ones picks the optimum (LRG
    5, regret 0); one predicting drops >= 1 keeps the native grid (regret 12.5 / 5.714 - 1)."""
    # 0.6725 * r + 0.0022 = measured drop 0.025, 0.125, 0.375 at bands 4, 2, 1
    good = {1: 0.5544, 2: 0.1826, 4: 0.0339, 8: 0.01, 32: 0.0}
    pessimistic = {k: 10.0 * (9 - k) for k in (1, 2, 4, 8)}
    with pytest.warns(AnalysisWarning, match="no label curve for data set 'uncurved'"):
        result = labels_only_backtest(_runs(), {"good": good, "pessimistic": pessimistic})
    groups = result.groups.set_index("dataset")
    assert list(groups.index) == ["good", "pessimistic"]
    assert list(groups["spearman"]) == pytest.approx([1.0, 1.0])
    assert groups.loc["good", "pick_lrg"] == 5 == groups.loc["good", "optimal_lrg"]
    assert bool(groups.loc["good", "exact"]) and groups.loc["good", "regret"] == pytest.approx(0)
    assert groups.loc["pessimistic", "pick_lrg"] == 17
    regret = (10.0 / 0.80) / (4.0 / 0.70) - 1.0
    assert groups.loc["pessimistic", "regret"] == pytest.approx(regret)
    summary = result.summary
    assert summary["groups"] == 2 and summary["exact_picks"] == 1
    assert summary["mean_spearman"] == pytest.approx(1.0)
    assert summary["mean_regret"] == pytest.approx(regret / 2)
    assert summary["max_regret"] == pytest.approx(regret)
    assert summary["skipped"] == ["m / uncurved / prune 0"]
    rows = result.rows.set_index(["dataset", "lrg"])
    assert rows.loc[("good", 17), "predicted_drop"] == 0.0  # the reference: measured
    assert rows.loc[("good", 5), "measured_drop"] == pytest.approx(0.125)
    assert rows.loc[("good", 5), "predicted_drop"] == pytest.approx(0.125, abs=1e-4)


def test_plan_feasibility_and_recommendation_rules() -> None:
    curves = label_curves(
        "synthetic-smooth",
        input_size=SIZE,
        num_classes=CLASSES,
        options={"length": 2},
        temperature=0.3,
    )
    plan = labels_only_plan(curves, PAPER_ESTIMATOR, [9, 5, 3])
    assert plan.recommended is None and "no --max-drop" in plan.rule  # no FLOPs, no bound
    table = plan.table.set_index("lrg")
    assert table.loc[9, "predicted_drop"] == 0.0 and plan.native_lrg == 9
    assert table.loc[5, "predicted_drop"] < table.loc[3, "predicted_drop"]
    bound = float(table.loc[5, "predicted_drop"]) + 1e-6
    plan = labels_only_plan(curves, PAPER_ESTIMATOR, [9, 5, 3], max_drop=bound)
    assert plan.recommended == 5  # the smallest LRG within the bound
    gflops = {9: 2.0, 5: 1.0, 3: 0.9}
    plan = labels_only_plan(curves, PAPER_ESTIMATOR, [9, 5, 3], gflops=gflops, reference_miou=0.8)
    rel = plan.table.set_index("lrg")["relative_fpi"]
    assert rel[9] == 1.0 and plan.recommended == int(rel.idxmin())
    fpi = plan.table.set_index("lrg")["predicted_fpi"]
    assert fpi[9] == pytest.approx(2.0 / 0.8)


def test_cli_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    """(d) ``plan --labels-only`` prints the table, and one JSON object with --json."""
    argv = [
        "plan",
        "--labels-only",
        "--dataset",
        "synthetic-fine",
        "--input-size",
        str(SIZE),
        "--num-classes",
        str(CLASSES),
        "--option",
        "length=2",
    ]
    assert main([*argv, "--regressor", "r_ce_label", "--max-drop", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "labels only: synthetic-fine (val, 2 labels at 33x33, 3 classes)" in out
    header = next(line for line in out.splitlines() if line.startswith("lrg"))
    assert header.split() == [
        "lrg",
        "nu_max",
        "r_ce_label",
        "energy_above",
        "predicted_drop",
        "feasible",
        "extrapolated",
    ]
    assert "recommended LRG: 9" in out  # CE-0.1 ideal predictor: every smaller grid drops >= 5%
    flops = ["--model", "deeplabv3plus", "--backbone", "resnet18", "--lrgs", "9", "5", "3"]
    assert main([*argv, *flops, "--regressor", "energy_above", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dataset"] == "synthetic-fine" and plan["regressor"] == "energy_above"
    assert plan["native_lrg"] == 9 and plan["estimator"]["slope"] == PAPER_ESTIMATOR.slope
    rows = {r["lrg"]: r for r in plan["rows"]}
    assert list(rows) == [9, 5, 3]
    assert rows[9]["gflops"] > rows[5]["gflops"] > rows[3]["gflops"] > 0
    assert rows[9]["relative_fpi"] == 1.0 and rows[9]["predicted_drop"] == 0.0
    drop5 = PAPER_ESTIMATOR.predict_drop(rows[5]["energy_above"])
    assert rows[5]["predicted_drop"] == pytest.approx(max(0.0, drop5))
    best = min(
        (r for r in plan["rows"] if r["feasible"]), key=lambda r: (r["relative_fpi"], -r["lrg"])
    )
    assert plan["recommended"] == best["lrg"] and plan["rule"] == "least predicted FPI"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "nope"], "unknown data set 'nope'; choose from: synthetic-smooth"),
        (["--dataset", "synthetic-fine", "--run-id", "abc"], "without a run: drop --run-id"),
        (["--dataset", "voc", "--data-root", "/nonexistent"], "is not a directory"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--labels-only", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_cli_plan_without_labels_only_still_needs_its_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "--run-id", "abc"]) == 2
    assert "give --estimator FILE|paper or --estimator-from E1,E2" in capsys.readouterr().err
    assert main(["plan", "--estimator", "paper"]) == 2
    assert "one of the arguments --run-id --experiment is required" in capsys.readouterr().err
    assert main(["plan", "--estimator", "paper", "--run-id", "x", "--dataset", "voc"]) == 2
    assert "--dataset needs --labels-only" in capsys.readouterr().err


def test_ideal_logits_are_confident_and_zero_at_ignored_pixels() -> None:
    from trainables.spectral.ideal import ideal_logits

    labels = torch.tensor([[0, 1], [255, 2]])
    logits = ideal_logits(labels, 3, 4.0)
    assert logits.shape == (1, 3, 2, 2)
    assert logits[0, :, 1, 0].abs().sum() == 0 and logits[0, 2, 1, 1] == 4.0
    ce = torch.nn.functional.cross_entropy(logits, labels[None], ignore_index=255)
    assert float(ce) == pytest.approx(ideal_ce(3, 4.0))
