"""analysis.plan: predicted drop / mIoU / FPI per candidate LRG, feasibility, recommendation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from analysis import PAPER_ESTIMATOR, Estimator, curve_at, default_lrgs, plan_lrgs
from trainables.errors import InputError

CURVE = {8: 0.0, 6: 0.01, 4: 0.04, 2: 0.12, 1: 0.5}  # R_ce of the reference by band
GFLOPS = {17: 10.0, 13: 9.0, 9: 8.0, 5: 7.0, 3: 6.8}
LINE = Estimator(slope=1.0, intercept=0.0, r2=1.0, n=10)


def test_plan_table_and_recommendation() -> None:
    plan = plan_lrgs(LINE, 0.8, CURVE, GFLOPS, reference_lrg=17)
    table = plan.table.set_index("lrg")
    assert list(table.index) == [17, 13, 9, 5, 3]
    assert list(plan.table.columns)[:8] == [
        "lrg",
        "nu_max",
        "r_ce",
        "predicted_drop",
        "predicted_miou",
        "gflops",
        "predicted_fpi",
        "feasible",
    ]
    assert table.loc[17, "predicted_drop"] == 0.0 and table.loc[17, "r_ce"] == 0.0
    assert table.loc[9, "nu_max"] == 4
    assert table.loc[9, "predicted_miou"] == pytest.approx(0.8 * 0.96)
    assert table.loc[9, "predicted_fpi"] == pytest.approx(8.0 / (0.8 * 0.96))
    fpi = {s: GFLOPS[s] / (0.8 * (1 - CURVE[(s - 1) // 2])) for s in GFLOPS if s != 17}
    fpi[17] = 10.0 / 0.8
    assert plan.recommended == min(fpi, key=lambda s: fpi[s]) == 5
    assert bool(table.loc[3, "extrapolated"]) and not bool(table.loc[5, "extrapolated"])


def test_max_drop_limits_feasible_rows() -> None:
    plan = plan_lrgs(LINE, 0.8, CURVE, GFLOPS, max_drop=0.05, reference_lrg=17)
    feasible = dict(zip(plan.table["lrg"], plan.table["feasible"], strict=True))
    assert feasible == {17: True, 13: True, 9: True, 5: False, 3: False}
    assert plan.recommended == 9  # 8/0.768 = 10.4 < 9/0.792 = 11.4 < 10/0.8 = 12.5
    none = plan_lrgs(LINE, 0.8, {4: 0.5, 2: 0.4}, {9: 8.0, 5: 7.0}, max_drop=0.1)
    assert none.recommended is None and not none.table["feasible"].any()


def test_drop_of_one_or_more_is_infeasible_never_negative_miou() -> None:
    steep = Estimator(slope=3.0, intercept=0.0, r2=1.0, n=5)
    plan = plan_lrgs(steep, 0.7, CURVE, GFLOPS, reference_lrg=17)
    row = plan.table.set_index("lrg").loc[3]  # 3 * 0.5 = 1.5 >= 1
    assert row["predicted_drop"] == pytest.approx(1.5)
    assert not row["feasible"]
    assert math.isnan(row["predicted_miou"]) and math.isinf(row["predicted_fpi"])
    assert (plan.table["predicted_miou"].dropna() > 0).all()
    assert plan.recommended in (17, 13, 9, 5)


def test_negative_predicted_drop_clipped_at_zero() -> None:
    optimistic = Estimator(slope=0.5, intercept=-0.1, r2=1.0, n=5)
    plan = plan_lrgs(optimistic, 0.8, CURVE, {13: 9.0}, reference_lrg=17)
    assert plan.table["predicted_drop"].iloc[0] == 0.0
    assert plan.table["predicted_miou"].iloc[0] == pytest.approx(0.8)


def test_ties_go_to_the_larger_lrg() -> None:
    plan = plan_lrgs(LINE, 0.5, {4: 0.0, 2: 0.0}, {9: 5.0, 5: 5.0})
    assert plan.recommended == 9


def test_curve_interpolation_and_missing_band() -> None:
    assert curve_at({2: 0.1, 6: 0.3}, 4) == pytest.approx(0.2)
    assert curve_at({2: 0.1, 6: 0.3}, 6) == 0.3
    assert math.isnan(curve_at({2: 0.1, 6: 0.3}, 1))
    with pytest.raises(InputError, match="band 0"):
        plan_lrgs(PAPER_ESTIMATOR, 0.8, {2: 0.1, 6: 0.3}, {1: 1.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reference_miou": 0.0}, "reference mIoU"),
        ({"reference_miou": 78.0}, "reference mIoU"),
        ({"candidates": {}}, "no candidate"),
        ({"candidates": {9: 0.0}}, "GFLOPs"),
        ({"max_drop": 1.5}, "max drop"),
    ],
)
def test_plan_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "estimator": PAPER_ESTIMATOR,
        "reference_miou": 0.8,
        "r_ce_curve": CURVE,
        "candidates": GFLOPS,
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        plan_lrgs(**args)  # type: ignore[arg-type]


def test_plan_to_dict_is_json_ready() -> None:
    import json

    steep = Estimator(slope=3.0, intercept=0.0, r2=1.0, n=5)
    plan = plan_lrgs(steep, 0.7, CURVE, GFLOPS, reference_lrg=17)
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["recommended"] == plan.recommended
    assert data["rows"][-1]["predicted_fpi"] is None  # inf -> null
    assert data["rows"][0]["feasible"] is True


def test_default_lrgs_scale_the_paper_sizes() -> None:
    assert default_lrgs(513, 129) == [129, 97, 81, 65, 49, 33, 17]
    assert default_lrgs(65, 17) == [17, 13, 11, 9, 7, 5, 3]


def test_plan_counts_flops_in_the_reference_runs_convention() -> None:
    """A reference trained under the paper's FLOPs convention is planned on the same scale."""
    from analysis.plan import plan_reference
    from analysis.references import _reference
    from trainables.flops import architecture_flops

    params = {
        "model": "dan",
        "dataset": "synthetic-smooth",
        "backbone": "resnet18",
        "input_size": "65",
        "num_classes": "4",
        "prune_rate": "0.4",
        "decoder_prune_rate": "0.2",
        "lrg": "None",
        "lrg_effective": "17",
        "native_lrg": "17",
        "flops_convention": "paper",
    }
    ref = _reference(params, "r1", 0.8, dict(CURVE), "run r1")
    assert ref.flops_convention == "paper"
    plan = plan_reference(LINE, ref, lrgs=[17, 9])
    gflops = dict(zip(plan.table["lrg"], plan.table["gflops"], strict=True))
    for s in (17, 9):
        paper = architecture_flops("dan", "resnet18", 65, 4, s, 0.4, 0.2, convention="paper")
        compact = architecture_flops("dan", "resnet18", 65, 4, s, 0.4, 0.2)
        assert gflops[s] == pytest.approx(paper.gflops) and paper.gflops < compact.gflops
    legacy = _reference(
        {k: v for k, v in params.items() if k != "flops_convention"},
        "r2",
        0.8,
        dict(CURVE),
        "run r2",
    )
    assert legacy.flops_convention == "compact"  # runs logged before the setting existed


def test_plan_out_names_what_is_wrong_with_the_path(tmp_path: Path) -> None:
    """``plan --out FILE``: a file where its folder should be is named as a file (before: "the
    folder does not exist")."""
    from orchestrator.commands.plan_outputs import check_space_out

    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = {
        str(afile / "p.yaml"): "is a file, not a folder",
        str(tmp_path / "missing" / "p.yaml"): "does not exist",
        str(tmp_path / "p.txt"): "name it *.yaml",
    }
    for value, message in cases.items():
        with pytest.raises(InputError, match=re.escape(message)):
            check_space_out(value)
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        check_space_out(str(tmp_path / "d.yaml"))
    assert check_space_out(str(tmp_path / "ok.yaml")) == tmp_path / "ok.yaml"
