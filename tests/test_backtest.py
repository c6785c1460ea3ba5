"""Backtests of the sweep-skipping strategies: the paper's own tables (the check that the replay
is right, and the adaptive strategy's targets), hand-made groups whose right pick is known by
hand, the rule that a strategy sees only what it trained, the budget curve, and the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import PAPER_ESTIMATOR, load_runs_csv
from analysis.backtest import Sweep, backtest
from analysis.budget import budget_curve
from analysis.strategies import StrategyOptions
from orchestrator.cli import main

# --------------------------------------------------------------------- the paper's tables


@pytest.fixture(scope="module")
def paper_sweep(paper_runs_csv: Path) -> Sweep:
    return Sweep.from_runs(load_runs_csv(paper_runs_csv))


def test_paper_strategy_reproduces_the_published_lodo_check(paper_sweep: Sweep) -> None:
    """Fit on two data sets, pick on the third: 18 of 24 exact, worst regret 4.4 % (Cityscapes,
    DeepLab v3+ at prune 0.6: LRG 65 picked, 33 optimal: 35/0.548 against 29/0.474)."""
    summary = backtest(paper_sweep, "paper", PAPER_ESTIMATOR, lodo=True).summary()
    assert (summary["groups"], summary["exact"]) == (24, 18)
    assert summary["max_regret"] == pytest.approx((35 / 0.548) / (29 / 0.474) - 1, abs=1e-9)
    assert summary["trainings"] == 24 and summary["exhaustive_trainings"] == 168


def test_adaptive_strategy_meets_its_targets_on_the_paper(paper_sweep: Sweep) -> None:
    """Worst FPI regret <= 1 % in every group, mean <= 0.1 %, at most half the grid's
    trainings; every pick was trained."""
    result = backtest(paper_sweep, "adaptive", PAPER_ESTIMATOR, lodo=True)
    summary = result.summary()
    assert summary["max_regret"] <= 0.01
    assert summary["mean_regret"] <= 0.001
    assert summary["trainings"] <= 168 // 2
    assert summary["exact"] >= 20
    assert all(g["trainings"] >= 1 for g in summary["per_group"])


def test_saturating_form_is_replayed_too(paper_sweep: Sweep) -> None:
    """The paper's method loses with the saturating form (16 exact against 18); the adaptive
    strategy holds its targets with either."""
    paper = backtest(paper_sweep, "paper", PAPER_ESTIMATOR, lodo=True, form="saturating")
    assert paper.summary()["exact"] < 18
    bent = backtest(paper_sweep, "adaptive", PAPER_ESTIMATOR, lodo=True, form="saturating")
    assert bent.summary()["max_regret"] <= 0.01 and bent.summary()["mean_regret"] <= 0.001


def test_a_strategy_sees_only_what_it_trained(paper_runs_csv: Path, tmp_path: Path) -> None:
    """Scramble the mIoU of every Cityscapes configuration the adaptive strategy did not train:
    its Cityscapes choices and picks stay the same (the held-out fold's estimator is fitted on
    the other data sets, which are untouched)."""
    runs = load_runs_csv(paper_runs_csv)
    before = backtest(Sweep.from_runs(runs), "adaptive", PAPER_ESTIMATOR, lodo=True)
    city = [g for g in before.per_group if g["dataset"] == "cityscapes"]
    trained = {(c.group, c.candidate.lrg) for c in before.choices}
    table = pd.read_csv(paper_runs_csv)
    for i, row in table.iterrows():
        label = f"{row['model']} / {row['dataset']} / prune {row['prune_rate']:g}"
        untrained = (label, int(row["lrg"])) not in trained and row["lrg"] != 129
        if row["dataset"] == "cityscapes" and pd.isna(row["annotation_nu_max"]) and untrained:
            table.loc[i, "miou"] = 0.9 if i % 2 else 0.05  # would change every pick if seen
    scrambled = tmp_path / "scrambled.csv"
    table.to_csv(scrambled, index=False)
    after = backtest(
        Sweep.from_runs(load_runs_csv(scrambled)), "adaptive", PAPER_ESTIMATOR, lodo=True
    )
    assert [g["picked"] for g in after.per_group if g["dataset"] == "cityscapes"] == [
        g["picked"] for g in city
    ]
    reasons = [c.reason() for c in before.choices if "cityscapes" in c.group]
    assert [c.reason() for c in after.choices if "cityscapes" in c.group] == reasons


def test_budget_curve_only_improves_and_starts_at_the_reference(paper_sweep: Sweep) -> None:
    curve = budget_curve(paper_sweep, PAPER_ESTIMATOR, lodo=True)
    assert sorted(curve["budget"].unique()) == list(range(1, 8))
    first = curve.loc[curve["budget"] == 1]
    assert (first["trainings"] == 1).all()
    for _, group in curve.groupby("group"):
        regrets = group.sort_values("budget")["regret"].tolist()
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(regrets))
        trainings = group.sort_values("budget")["trainings"].tolist()
        assert trainings == sorted(trainings)


# --------------------------------------------------------------------- hand-made groups

#: Two groups whose optimum is known by hand. FPI (GFLOPs / mIoU) of dan: 12.5, 7.595, 6.667,
#: 9.6 -> LRG 5; of deeplabv3plus (LRG 5 loses a quarter): 12.5, 7.595, 8.333, 9.6 -> LRG 9.
#: The paper's line predicts the same for both (same R_ce) and picks LRG 5 in both.
HAND = [
    # model, lrg, gflops, miou, r_ce
    ("dan", 17, 10.0, 0.80, 0.003),
    ("dan", 9, 6.0, 0.79, 0.01),
    ("dan", 5, 5.0, 0.75, 0.05),
    ("dan", 3, 4.8, 0.50, 0.5),
    ("deeplabv3plus", 17, 10.0, 0.80, 0.003),
    ("deeplabv3plus", 9, 6.0, 0.79, 0.01),
    ("deeplabv3plus", 5, 5.0, 0.60, 0.05),
    ("deeplabv3plus", 3, 4.8, 0.50, 0.5),
]


def hand_csv(path: Path, rows: list[tuple[Any, ...]] = HAND) -> Path:
    frame = pd.DataFrame(rows, columns=["model", "lrg", "gflops", "miou", "r_ce"])
    frame.insert(1, "dataset", "toy")
    frame.insert(2, "prune_rate", 0.0)
    frame.to_csv(path, index=False)
    return path


def test_hand_made_groups_known_picks(tmp_path: Path) -> None:
    sweep = Sweep.from_runs(load_runs_csv(hand_csv(tmp_path / "hand.csv")))
    paper = {g["group"]: g for g in backtest(sweep, "paper", PAPER_ESTIMATOR).per_group}
    adaptive = {g["group"]: g for g in backtest(sweep, "adaptive", PAPER_ESTIMATOR).per_group}
    dan, deeplab = "dan / toy / prune 0", "deeplabv3plus / toy / prune 0"
    # paper: predicted FPI at 5 = 5 / (0.8 (1 - 0.6725 * 0.05 - 0.0022)) = 6.48, the least
    assert paper[dan]["picked"] == 5 and paper[dan]["exact"]
    assert paper[deeplab]["picked"] == 5 and not paper[deeplab]["exact"]
    assert paper[deeplab]["regret"] == pytest.approx((5 / 0.6) / (6 / 0.79) - 1)
    # adaptive: trains 5 first in both; in deeplabv3plus it then measures 9, the optimum, and
    # stops: LRG 3 would need a drop below 20 % where LRG 5 already lost 25 % (monotone)
    assert adaptive[dan]["picked"] == 5 and adaptive[deeplab]["picked"] == 9
    assert adaptive[dan]["regret"] == 0 and adaptive[deeplab]["regret"] == 0
    assert adaptive[deeplab]["trainings"] == 3
    assert adaptive[dan]["trainings"] <= 3


def test_budget_one_is_the_reference_and_two_is_one_more(tmp_path: Path) -> None:
    sweep = Sweep.from_runs(load_runs_csv(hand_csv(tmp_path / "hand.csv")))
    one = backtest(sweep, "adaptive", PAPER_ESTIMATOR, StrategyOptions(budget=1))
    assert [g["picked"] for g in one.per_group] == [17, 17] and one.trainings == 2
    two = backtest(sweep, "adaptive", PAPER_ESTIMATOR, StrategyOptions(budget=2))
    assert [g["picked"] for g in two.per_group] == [5, 5] and two.trainings == 4


def test_annotation_groups_pick_the_coarsest_band_within_max_drop(tmp_path: Path) -> None:
    rows = [
        {"model": "dan", "dataset": "toy", "prune_rate": 0, "lrg": 17, "miou": 0.8,
         "gflops": 10, "annotation_nu_max": "", "r_ce": 0.0},
        {"model": "dan", "dataset": "toy", "prune_rate": 0, "lrg": 9, "miou": 0.79,
         "gflops": 6, "annotation_nu_max": "", "r_ce": 0.01},
    ]  # fmt: skip
    for nu, miou, r_ce in ((4, 0.79, 0.01), (2, 0.77, 0.05), (1, 0.6, 0.4)):
        rows.append({**rows[0], "annotation_nu_max": nu, "miou": miou, "r_ce": r_ce})
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    sweep = Sweep.from_runs(load_runs_csv(path))
    options = StrategyOptions(max_drop=0.05)
    result = backtest(sweep, "adaptive", PAPER_ESTIMATOR, options)
    (labels,) = [g for g in result.per_group if g["kind"] == "annotation"]
    # drops: nu 4 1.25 %, nu 2 3.75 %, nu 1 25 %: the coarsest within 5 % is nu 2
    assert labels["optimal"] == "nu_max 2" and labels["picked"] == "nu_max 2"
    assert labels["exact"] and labels["within_max_drop"]
    without = backtest(sweep, "adaptive", PAPER_ESTIMATOR)
    assert [g["kind"] for g in without.per_group] == ["truncation"]
    assert any("needs --max-drop" in line for line in without.left_out)


def test_a_group_missing_configurations_is_named_and_left_out(tmp_path: Path) -> None:
    rows = [r for r in HAND if not (r[0] == "deeplabv3plus" and r[1] == 3)]
    with pytest.warns(UserWarning, match=r"deeplabv3plus / toy / prune 0: not exhaustive: LRG 3"):
        sweep = Sweep.from_runs(load_runs_csv(hand_csv(tmp_path / "partial.csv", rows)))
    result = backtest(sweep, "adaptive", PAPER_ESTIMATOR)
    assert [g["group"] for g in result.per_group] == ["dan / toy / prune 0"]
    assert result.exhaustive_trainings == 4


def _with(rows: list[tuple[Any, ...]], changes: dict[tuple[str, int], tuple[float, float]]) -> Any:
    """HAND with some (model, lrg) rows given new (gflops, miou)."""
    out = []
    for model, lrg, gflops, miou, r_ce in rows:
        gflops, miou = changes.get((model, lrg), (gflops, miou))
        out.append((model, lrg, gflops, miou, r_ce))
    return out


def test_a_pick_that_ties_the_optimum_is_exact(tmp_path: Path) -> None:
    """dan's LRG 9 and 5 both measure FPI 8.0 (6 / 0.75 and 5 / 0.625, exact in binary): the
    optimum is named by the larger LRG, and the paper's pick, 5, ties it: exact, regret 0."""
    rows = _with(HAND, {("dan", 9): (6.0, 0.75), ("dan", 5): (5.0, 0.625)})
    sweep = Sweep.from_runs(load_runs_csv(hand_csv(tmp_path / "tie.csv", rows)))
    result = backtest(sweep, "paper", PAPER_ESTIMATOR)
    dan = next(g for g in result.per_group if g["group"] == "dan / toy / prune 0")
    assert (dan["optimal"], dan["picked"], dan["regret"]) == (9, 5, 0.0)
    assert dan["exact"]
    assert result.summary()["exact"] == 1  # deeplabv3plus's pick is still not an optimum


def test_a_pick_measured_at_miou_0_has_an_unbounded_regret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The paper's pick in dan, LRG 5, measured mIoU 0: FPI inf, regret inf. The summary keeps
    it (mean and worst inf, not the other group's alone), the CLI says so in words and its
    JSON reads back."""
    rows = _with(HAND, {("dan", 5): (5.0, 0.0)})
    path = hand_csv(tmp_path / "zero.csv", rows)
    summary = backtest(Sweep.from_runs(load_runs_csv(path)), "paper", PAPER_ESTIMATOR).summary()
    assert math.isinf(summary["max_regret"]) and math.isinf(summary["mean_regret"])
    assert main(["backtest", "--runs-csv", str(path), "--strategy", "paper"]) == 0
    assert "worst unbounded (a pick measured mIoU 0)" in capsys.readouterr().out
    assert main(["backtest", "--runs-csv", str(path), "--strategy", "paper", "--json"]) == 0
    assert math.isinf(json.loads(capsys.readouterr().out)["max_regret"])


def test_a_reference_at_miou_0_is_named_and_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deeplabv3plus's reference (LRG 17) measured mIoU 0: drops relative to it are undefined.
    ``backtest`` and ``analyze`` name the group, leave it out and go on with the other one
    (before: ZeroDivisionError with a traceback)."""
    path = hand_csv(tmp_path / "ref0.csv", _with(HAND, {("deeplabv3plus", 17): (10.0, 0.0)}))
    with pytest.warns(UserWarning, match=r"deeplabv3plus / toy / prune 0: its reference run"):
        sweep = Sweep.from_runs(load_runs_csv(path))
    result = backtest(sweep, "paper", PAPER_ESTIMATOR)
    assert [g["group"] for g in result.per_group] == ["dan / toy / prune 0"]
    assert any("has mIoU 0" in line for line in result.left_out)
    assert main(["backtest", "--runs-csv", str(path), "--strategy", "adaptive"]) == 0
    out = tmp_path / "report"
    assert main(["analyze", "--runs-csv", str(path), "--out", str(out)]) == 0
    drops = pd.read_csv(out / "drops.csv")
    assert set(drops["model"]) == {"dan"}
    assert "deeplabv3plus" in set(pd.read_csv(out / "optimal_lrg.csv")["model"])
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------- the CLI


def test_cli_json_and_outputs(
    paper_runs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bt"
    argv = ["backtest", "--runs-csv", str(paper_runs_csv), "--strategy", "adaptive", "--lodo"]
    assert main([*argv, "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    keys = {"groups", "exact", "mean_regret", "max_regret", "trainings", "exhaustive_trainings"}
    assert keys <= set(summary) and len(summary["per_group"]) == summary["groups"] == 24
    assert [row["budget"] for row in summary["budget_curve"]] == list(range(1, 8))
    for name in ("backtest.json", "backtest_groups.csv", "budget_curve.csv", "budget_curve.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "budget_curve.png").read_bytes()[:4] == b"\x89PNG"
    choices = pd.read_csv(out / "backtest_choices.csv")
    assert (
        len(choices) == summary["trainings"] - 24
        and choices["reason"].str.contains("P(better)", regex=False).all()
    )
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "exact picks" in text and "budget curve" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "adaptive", "--budget", "0"], "--budget 0 must be >= 1"),
        (["--strategy", "paper", "--lodo", "--estimator", "paper"], "drop --estimator"),
        (["--strategy", "paper", "--tolerance", "1.5"], "--tolerance 1.5 is not a fraction"),
        (["--strategy", "paper", "--form", "saturating"], "--form applies to the estimators"),
        (["--strategy", "paper", "--budget", "3"], "--budget needs --strategy adaptive"),
        (["--strategy", "paper", "--tolerance", "0.5"], "--tolerance needs --strategy adaptive"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    paper_runs_csv: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--runs-csv", str(paper_runs_csv), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_unknown_strategy_lists_the_registry(
    paper_runs_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backtest", "--runs-csv", str(paper_runs_csv), "--strategy", "greedy"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'paper', 'adaptive'" in err[0]


def test_regret_is_relative_fpi() -> None:
    """The definition, by hand: FPI(pick) / FPI(optimum) - 1."""
    assert math.isclose((5 / 0.6) / (6 / 0.79) - 1, 0.09722222, rel_tol=1e-6)
