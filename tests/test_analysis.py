"""analysis: runs in, FPI and optimal LRG, relative drops, the estimator fit and LODO validation.

Hand-made run tables where the optimum and the fit are known exactly.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import (
    PAPER_ESTIMATOR,
    AnalysisWarning,
    Estimator,
    analyze,
    find_groups,
    fit_estimator,
    group_keys,
    load_runs_csv,
    optimal_lrg,
    prepare_runs,
)
from trainables.errors import InputError

LRGS = (17, 13, 9, 5, 3)  # native 17 at input 65; bands 8, 6, 4, 2, 1


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def line_rows(
    dataset: str,
    slope: float,
    r_ce: dict[int, float],
    gflops: dict[int, float],
    ref_miou: float = 0.8,
    model: str = "deeplabv3plus",
    prune_rate: float = 0.0,
    ref_r_ce: float = 0.0,
) -> list[dict[str, Any]]:
    """One LRG group whose drops are exactly ``slope * (r_ce - ref_r_ce)`` (reference: largest
    LRG, its own R_ce ``ref_r_ce`` in the r_ce column: a point (ref_r_ce, 0) on the line)."""
    native = max(gflops)
    rows = []
    for s in sorted(gflops, reverse=True):
        r = ref_r_ce if s == native else r_ce[s]
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "prune_rate": prune_rate,
                "lrg": s,
                "miou": ref_miou * (1 - slope * (r - ref_r_ce)),
                "gflops": gflops[s],
                "r_ce": r,
            }
        )
    return rows


GFLOPS = {17: 10.0, 13: 9.0, 9: 8.0, 5: 7.0, 3: 6.5}
R_CE = {13: 0.01, 9: 0.05, 5: 0.1, 3: 0.3}


# --------------------------------------------------------------------- estimator


def test_fit_recovers_exact_line() -> None:
    r = [0.0, 0.01, 0.05, 0.1, 0.15, 0.19]
    drops = [0.5 * x + 0.01 for x in r]
    est = fit_estimator(r, drops, r_ce_max=0.2)
    assert est.slope == pytest.approx(0.5, abs=1e-9)
    assert est.intercept == pytest.approx(0.01, abs=1e-9)
    assert est.r2 == pytest.approx(1.0, abs=1e-12)
    assert est.n == 6


def test_fit_excludes_points_at_or_above_r_ce_max() -> None:
    r = [0.0, 0.05, 0.1, 0.2, 0.5, 1.7]
    drops = [0.5 * x + 0.01 for x in r[:3]] + [0.9, 0.1, 0.05]  # off-line points excluded
    est = fit_estimator(r, drops, r_ce_max=0.2)
    assert est.n == 3
    assert est.slope == pytest.approx(0.5, abs=1e-9)
    assert est.intercept == pytest.approx(0.01, abs=1e-9)
    wide = fit_estimator(r, drops, r_ce_max=2.0)
    assert wide.n == 6 and wide.slope != pytest.approx(0.5)


def test_fit_needs_two_distinct_r_ce() -> None:
    with pytest.raises(InputError, match="distinct"):
        fit_estimator([0.0, 0.0, 0.3], [0.0, 0.0, 0.2])


def test_predict_drop_and_paper_coefficients() -> None:
    assert PAPER_ESTIMATOR.slope == 0.6725
    assert PAPER_ESTIMATOR.intercept == 0.0022
    assert PAPER_ESTIMATOR.r2 == 0.91
    assert PAPER_ESTIMATOR.predict_drop(0.1) == pytest.approx(0.06945)


def test_estimator_json_round_trip(tmp_path: Path) -> None:
    est = Estimator(0.5, 0.01, 0.99, 12, 0.15, {"datasets": ["voc"], "runs": 12})
    back = Estimator.from_json(est.to_json(tmp_path / "e.json"))
    assert back == est
    nan_r2 = Estimator(0.5, 0.0, math.nan, 2)
    again = Estimator.from_json(nan_r2.to_json(tmp_path / "n.json"))
    assert math.isnan(again.r2) and again.slope == 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"intercept": 0.0, "r2": 1.0, "n": 3}, "missing field 'slope'"),
        ({"slope": "steep", "intercept": 0.0}, "field 'slope'"),
        ({"slope": 0.5, "intercept": 0.0, "n": -2}, "field 'n'"),
        ({"slope": 0.5, "intercept": 0.0, "fitted_on": [1]}, "field 'fitted_on'"),
        ([0.5, 0.0], "expected a JSON object"),
    ],
)
def test_estimator_file_of_wrong_shape(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        Estimator.from_json(path)


def test_estimator_file_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("slope: 0.5")
    with pytest.raises(InputError, match="not JSON"):
        Estimator.from_json(path)


# --------------------------------------------------------------------- CSV input


def test_csv_missing_columns_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [{"model": "dan", "dataset": "voc", "lrg": 17}])
    with pytest.raises(InputError, match="prune_rate, miou, gflops") as err:
        load_runs_csv(path)
    assert "\n" not in str(err.value)


def test_csv_non_numeric_value_names_line_and_column(tmp_path: Path) -> None:
    rows = line_rows("voc", 0.5, R_CE, GFLOPS)
    rows[2]["gflops"] = "lots"
    path = write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(InputError, match=r"line 4, column 'gflops': 'lots' is not a number"):
        load_runs_csv(path)


def test_csv_percent_miou_rejected(tmp_path: Path) -> None:
    rows = line_rows("voc", 0.5, R_CE, GFLOPS)
    rows[0]["miou"] = 78.5
    with pytest.raises(InputError, match=r"line 2, column 'miou'.*fraction"):
        load_runs_csv(write_csv(tmp_path / "r.csv", rows))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("gflops", "inf", "column 'gflops': inf is not a number > 0"),
        ("annotation_nu_max", -3, "column 'annotation_nu_max': -3 is not a whole number >= 0"),
        ("annotation_nu_max", 2.5, "column 'annotation_nu_max': 2.5 is not a whole number"),
        ("input_size", -513, "column 'input_size': -513 is not a whole number >= 1"),
        ("seed", 1.5, "column 'seed': 1.5 is not a whole number"),
        ("seed", "inf", "column 'seed': inf is not a whole number"),
        ("r_ce", -0.1, "column 'r_ce': -0.1 is not a rate >= 0"),
    ],
)
def test_csv_values_out_of_range_name_line_and_column(
    tmp_path: Path, column: str, value: Any, message: str
) -> None:
    """Before, these were read as given (an LRG group at a negative label band, an infinite
    FLOPs count), and the analysis went on with them."""
    rows = line_rows("voc", 0.5, R_CE, GFLOPS)
    rows[1][column] = value
    with pytest.raises(InputError, match=rf"line 3, {re.escape(message)}"):
        load_runs_csv(write_csv(tmp_path / "r.csv", rows))


def test_csv_normalised_columns(tmp_path: Path) -> None:
    frame = load_runs_csv(write_csv(tmp_path / "r.csv", line_rows("voc", 0.5, R_CE, GFLOPS)))
    for column in ("model", "dataset", "prune_rate", "lrg", "miou", "gflops"):
        assert column in frame
    for column in ("annotation_nu_max", "r_ce", "seed", "run_id"):
        assert column in frame
    assert frame["annotation_nu_max"].isna().all()
    assert frame["lrg"].tolist() == [17, 13, 9, 5, 3]
    assert frame["run_id"].tolist()[0] == "r.csv:2"
    assert frame["native_lrg"].tolist() == [17.0] * 5


def test_nan_miou_rows_counted_and_left_out(tmp_path: Path) -> None:
    rows = line_rows("voc", 0.5, R_CE, GFLOPS)
    rows[1]["miou"] = ""
    rows[3]["miou"] = "nan"
    with pytest.warns(AnalysisWarning, match="2 run") as caught:
        frame = load_runs_csv(write_csv(tmp_path / "r.csv", rows))
    assert len(frame) == 3
    assert all("\n" not in str(w.message) for w in caught)


# --------------------------------------------------------------------- FPI, drops, fit


def test_fpi_of_scalars_and_series_agree() -> None:
    """GFLOPs / mIoU; inf at mIoU 0 (a trained net that got nothing right), NaN when mIoU is
    NaN (no measurement: a trial's logged FPI must not read as infinitely bad)."""
    from trainables.measures import fpi

    mious = [0.5, 0.0, math.nan]
    scalars = [fpi(139.0, m) for m in mious]
    series = fpi(pd.Series([139.0] * 3), pd.Series(mious)).tolist()
    assert scalars[0] == series[0] == 278.0
    assert math.isinf(scalars[1]) and math.isinf(series[1])
    assert math.isnan(scalars[2]) and math.isnan(series[2])


def test_optimal_lrg_is_fpi_argmin_per_group(tmp_path: Path) -> None:
    gflops = {17: 10.0, 9: 6.0, 5: 5.0}
    rows = []
    for prune, mious in ((0.0, {17: 0.8, 9: 0.78, 5: 0.5}), (0.4, {17: 0.6, 9: 0.3, 5: 0.29})):
        rows += [
            {"model": "dan", "dataset": "voc", "prune_rate": prune, "lrg": s, "miou": m}
            | {"gflops": gflops[s] * (1 - prune)}
            for s, m in mious.items()
        ]
    runs = load_runs_csv(write_csv(tmp_path / "r.csv", rows))
    best = optimal_lrg(prepare_runs(runs))
    assert list(best.columns) == ["model", "dataset", "prune_rate", "lrg", "gflops", "miou", "fpi"]
    by_prune = {float(r["prune_rate"]): r for r in best.to_dict("records")}
    assert by_prune[0.0]["lrg"] == 9  # 6/0.78 = 7.69 < 10/0.8 = 12.5 < 5/0.5 = 10
    assert by_prune[0.4]["lrg"] == 17  # 6/0.6 = 10 < 3.6/0.3 = 12 < 3/0.29 = 10.3
    assert by_prune[0.0]["fpi"] == pytest.approx(6.0 / 0.78)


def test_pipeline_fit_exact_with_reference_rows(tmp_path: Path) -> None:
    # each reference sits at its own band's R_ce (0.004), drop 0: the line is 0.5 (R_ce - 0.004)
    rows = line_rows("voc", 0.5, R_CE, GFLOPS, ref_r_ce=0.004)
    rows += line_rows("deepglobe", 0.5, R_CE, GFLOPS, ref_r_ce=0.004)
    # LRG 3 (R_ce 0.3 >= 0.2) is off the line and must not bend the fit
    for row in rows:
        if row["lrg"] == 3:
            row["miou"] = 0.8 * (1 - 0.9 * 0.3)
    analysis = analyze(load_runs_csv(write_csv(tmp_path / "r.csv", rows)))
    est = analysis.estimator
    assert est is not None
    assert est.slope == pytest.approx(0.5, abs=1e-9)
    assert est.intercept == pytest.approx(-0.5 * 0.004, abs=1e-9)
    assert est.r2 == pytest.approx(1.0, abs=1e-9)
    assert est.n == 8  # 2 groups x (reference + 3 points below 0.2)
    assert est.fitted_on["datasets"] == ["deepglobe", "voc"]
    refs = analysis.drops.loc[analysis.drops["is_reference"]]
    assert (refs["drop"] == 0).all() and len(refs) == 2
    assert refs["r_ce"].tolist() == [0.004, 0.004]  # the CSV's r_ce, not 0
    excluded = analysis.drops.loc[~analysis.drops["in_fit"]]
    assert excluded["lrg"].tolist() == [3, 3]


def test_repeats_averaged_by_seed(tmp_path: Path) -> None:
    rows = []
    for seed, ref, low in ((0, 0.7, 0.6), (1, 0.9, 0.8)):
        rows += [
            {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 17, "miou": ref}
            | {"gflops": 10.0, "seed": seed},
            {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 9, "miou": low}
            | {"gflops": 8.0, "seed": seed, "r_ce": 0.1},
        ]
    rows.append(rows[-1] | {"seed": 2, "miou": 0.4})  # a third repeat at LRG 9 only
    prepared = prepare_runs(load_runs_csv(write_csv(tmp_path / "r.csv", rows)))
    assert len(prepared) == 2
    by_lrg = {int(r["lrg"]): r for r in prepared.to_dict("records")}
    assert by_lrg[17]["miou"] == pytest.approx(0.8)
    assert by_lrg[9]["miou"] == pytest.approx((0.6 + 0.8 + 0.4) / 3)
    assert by_lrg[9]["n_runs"] == 3


def test_regressor_from_reference_curve_when_row_has_none(tmp_path: Path) -> None:
    """Rows without r_ce read the reference's R_ce at their band (here its r_ce_nu{K})."""
    curve = {8: 0.0, 6: 0.02, 4: 0.08, 2: 0.3}
    rows = [
        {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 17, "miou": 0.8}
        | {"gflops": 10.0}
        | {f"r_ce_nu{k}": v for k, v in curve.items()},
        {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 13, "miou": 0.79, "gflops": 9},
        {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 9, "miou": 0.76, "gflops": 8},
        # block-wise rows at the native grid, bands 8, 4 and 2: their reference is the
        # pixel-wise run of the same setting (LRG 17), not the largest block-wise band
        *[
            {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 17, "miou": m}
            | {"gflops": 10.0, "annotation_nu_max": nu}
            for nu, m in ((8, 0.81), (4, 0.77), (2, 0.6))
        ],
    ]
    runs = load_runs_csv(write_csv(tmp_path / "r.csv", rows))
    analysis = analyze(runs)
    drops = analysis.drops.set_index(["kind", "nu_max"])
    assert drops.loc[("truncation", 6.0), "r_ce"].item() == pytest.approx(0.02)
    assert drops.loc[("truncation", 4.0), "r_ce"].item() == pytest.approx(0.08)
    assert drops.loc[("truncation", 4.0), "drop"].item() == pytest.approx(0.05)
    annotation = analysis.drops.loc[analysis.drops["kind"] == "annotation"]
    reference = annotation.loc[annotation["is_reference"]]
    assert len(reference) == 1 and reference["annotation_nu_max"].isna().all()
    assert float(reference["miou"].iloc[0]) == pytest.approx(0.8)
    blockwise = annotation.loc[~annotation["is_reference"]].set_index("annotation_nu_max")
    assert blockwise.loc[8.0, "drop"] == pytest.approx((0.8 - 0.81) / 0.8)
    assert blockwise.loc[8.0, "r_ce"] == pytest.approx(0.0)
    assert drops.loc[("annotation", 4.0), "drop"].item() == pytest.approx((0.8 - 0.77) / 0.8)
    assert drops.loc[("annotation", 4.0), "r_ce"].item() == pytest.approx(0.08)
    # the shared pixel-wise reference is one point of the fit, not two
    assert analysis.estimator is not None
    in_fit = analysis.drops.loc[analysis.drops["in_fit"]].drop_duplicates("run_id")
    assert analysis.estimator.n == len(in_fit)
    assert not drops.loc[("annotation", 2.0), "in_fit"].item()  # R_ce 0.3 >= 0.2
    curves = {
        str(g.reference["run_id"]): g.curve for g in analysis.groups if g.reference is not None
    }
    assert curves[runs["run_id"][0]] == curve


def test_groups_read_spectra_through_the_loader_they_are_given(tmp_path: Path) -> None:
    """Grouping reads no files itself: the loader's spectrum is the reference's curve."""
    rows = [
        {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 17, "miou": 0.8}
        | {"gflops": 10.0, "r_ce_nu8": 0.01, "r_ce_nu4": 0.1},
        {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "lrg": 9, "miou": 0.7, "gflops": 8},
    ]
    prepared = prepare_runs(load_runs_csv(write_csv(tmp_path / "r.csv", rows)))
    spectrum = pd.DataFrame({"k": [4, 8], "r_ce": [0.2, 0.02]})
    asked: list[str] = []

    def loader(reference: Any) -> pd.DataFrame:
        asked.append(str(reference["run_id"]))
        return spectrum

    (group,) = find_groups(prepared, loader)
    assert group.reference is not None and asked == [group.reference["run_id"]]
    assert group.curve == {4: 0.2, 8: 0.02}
    assert group.curve_source == "spectrum.csv" and group.spectrum is spectrum
    (plain,) = find_groups(prepared)  # no loader: the reference's r_ce_nu{K} points
    assert plain.curve == {4: 0.1, 8: 0.01} and plain.curve_source == "r_ce_nu metrics"


def test_group_without_reference_warned_and_left_out(tmp_path: Path) -> None:
    rows = line_rows("voc", 0.5, R_CE, GFLOPS)
    rows += [  # prune 0.4 group lost its native run (NaN mIoU)
        {"model": "deeplabv3plus", "dataset": "voc", "prune_rate": 0.4, "lrg": s, "miou": m}
        | {"gflops": g, "r_ce": r}
        for s, m, g, r in ((17, "", 6.0, ""), (9, 0.5, 5.0, 0.05), (5, 0.45, 4.0, 0.1))
    ]
    with pytest.warns(AnalysisWarning) as caught:
        runs = load_runs_csv(write_csv(tmp_path / "r.csv", rows))
        analysis = analyze(runs)
    messages = [str(w.message) for w in caught]
    assert any("deeplabv3plus / voc / prune 0.4" in m and "no reference" in m for m in messages)
    assert set(analysis.drops["prune_rate"]) == {0.0}
    assert analysis.estimator is not None and analysis.estimator.slope == pytest.approx(0.5)
    assert len(analysis.optimal) == 2  # the optimum still covers the group
    assert any("no reference" in n for n in analysis.notes)


# --------------------------------------------------------------------- LODO


def test_leave_one_dataset_out_picks(tmp_path: Path) -> None:
    gflops = {17: 10.0, 9: 8.0, 5: 7.0}
    r_ce = {9: 0.1, 5: 0.19}
    rows = [row for d in "abc" for row in line_rows(d, 0.5, r_ce, gflops)]
    # d loses 6x more than the line, at R_ce >= 0.2 (outside every fit but its reference)
    r_ce_d = {9: 0.25, 5: 0.3}
    rows += line_rows("d", 3.0, r_ce_d, gflops)
    analysis = analyze(load_runs_csv(write_csv(tmp_path / "r.csv", rows)))
    lodo = analysis.lodo.set_index("dataset")
    assert set(lodo.index) == {"a", "b", "c", "d"}
    # a, b, c: the line fitted on the others is exact -> the true optimum, zero regret
    fpi = {s: gflops[s] / (0.8 * (1 - 0.5 * r_ce.get(s, 0.0))) for s in gflops}
    assert min(fpi, key=lambda s: fpi[s]) == 5
    for d in "abc":
        assert lodo.loc[d, "true_lrg"] == 5 and lodo.loc[d, "picked_lrg"] == 5
        assert bool(lodo.loc[d, "exact"])
        assert lodo.loc[d, "regret"] == pytest.approx(0.0, abs=1e-12)
        assert lodo.loc[d, "slope"] == pytest.approx(0.5, abs=1e-9)
    # d: the line (slope 0.5) predicts LRG 5 is best, but d's own optimum is the native 17
    fpi_d = {s: gflops[s] / (0.8 * (1 - 3.0 * r_ce_d.get(s, 0.0))) for s in gflops}
    assert min(fpi_d, key=lambda s: fpi_d[s]) == 17
    assert lodo.loc["d", "true_lrg"] == 17
    assert lodo.loc["d", "picked_lrg"] == 5 and not bool(lodo.loc["d", "exact"])
    assert lodo.loc["d", "regret"] == pytest.approx((fpi_d[5] - fpi_d[17]) / fpi_d[17])


def test_lodo_truth_is_the_optimum_over_every_configuration(tmp_path: Path) -> None:
    """A cheap LRG whose band lies outside the reference curve cannot be predicted, but it is
    still the held-out group's optimum: the pick is scored against it, not a smaller table."""
    gflops = {17: 10.0, 9: 8.0, 5: 7.0}
    r_ce = {9: 0.1, 5: 0.19}
    rows = [row for d in "ab" for row in line_rows(d, 0.5, r_ce, gflops)]
    rows.append(
        {"model": "deeplabv3plus", "dataset": "a", "prune_rate": 0.0, "lrg": 3}
        | {"miou": 0.5, "gflops": 1.0, "r_ce": ""}
    )  # band 1: no R_ce known
    runs = load_runs_csv(write_csv(tmp_path / "r.csv", rows))
    with pytest.warns(AnalysisWarning, match=r"band\(s\) 1 outside the reference curve's bands"):
        analysis = analyze(runs)
    optimal = analysis.optimal.set_index("dataset")
    assert optimal.loc["a", "lrg"] == 3
    lodo = analysis.lodo.set_index("dataset")
    assert lodo.loc["a", "true_lrg"] == 3 and lodo.loc["a", "picked_lrg"] == 5
    assert not bool(lodo.loc["a", "exact"])
    fpi5 = 7.0 / (0.8 * (1 - 0.5 * 0.19))
    assert lodo.loc["a", "regret"] == pytest.approx(fpi5 / (1.0 / 0.5) - 1.0)


def test_single_dataset_has_no_lodo(tmp_path: Path) -> None:
    analysis = analyze(
        load_runs_csv(write_csv(tmp_path / "r.csv", line_rows("a", 0.5, R_CE, GFLOPS)))
    )
    assert analysis.lodo.empty


def test_context_columns_split_groups_only_when_they_vary_within_one(tmp_path: Path) -> None:
    rows = line_rows("voc", 0.5, R_CE, GFLOPS)
    rows += line_rows("voc", 0.5, R_CE, GFLOPS, prune_rate=0.4)
    for row in rows:  # the paper's decoder rate follows the encoder rate: no split
        row["decoder_prune_rate"] = 0.2 if row["prune_rate"] else 0.0
        row["backbone"] = "resnet18"
    runs = load_runs_csv(write_csv(tmp_path / "a.csv", rows))
    assert group_keys(runs) == ["model", "dataset", "prune_rate"]
    assert list(optimal_lrg(prepare_runs(runs)).columns)[:3] == ["model", "dataset", "prune_rate"]
    other = [row | {"backbone": "resnet50", "miou": row["miou"] * 0.9} for row in rows]
    runs = load_runs_csv(write_csv(tmp_path / "b.csv", rows + other))
    assert group_keys(runs) == ["model", "dataset", "prune_rate", "backbone"]
    analysis = analyze(runs)
    assert len(analysis.optimal) == 4 and "backbone" in analysis.optimal
    assert analysis.estimator is not None
    assert analysis.estimator.slope == pytest.approx(0.5, abs=1e-9)  # 0.9 x both: same drops


def test_annotation_reference_sits_at_the_image_band(tmp_path: Path) -> None:
    """A pixel-wise run is the truncation reference at its LRG band (R_ce 0.004 here) and the
    annotation reference at the image's own band, where R_ce is 0 (DESIGN.md)."""
    base = {"model": "dan", "dataset": "voc", "prune_rate": 0.0, "input_size": 65}
    rows = [
        base | {"lrg": 17, "miou": 0.8, "gflops": 10.0, "r_ce": 0.004},
        base | {"lrg": 9, "miou": 0.76, "gflops": 8.0, "r_ce": 0.05},
        base | {"lrg": 17, "miou": 0.77, "gflops": 10.0, "annotation_nu_max": 4, "r_ce": 0.06},
    ]
    drops = analyze(load_runs_csv(write_csv(tmp_path / "r.csv", rows))).drops
    refs = drops.loc[drops["is_reference"]].set_index("kind")
    assert refs.loc["truncation", "r_ce"] == pytest.approx(0.004)
    assert refs.loc["truncation", "nu_max"] == 8
    assert refs.loc["annotation", "r_ce"] == 0.0 and refs.loc["annotation", "nu_max"] == 32


def test_fit_without_any_r_ce_below_the_range_says_so(tmp_path: Path) -> None:
    rows = line_rows("voc", 0.5, {13: 0.3, 9: 0.4, 5: 0.5, 3: 0.6}, GFLOPS, ref_r_ce=0.25)
    analysis = analyze(load_runs_csv(write_csv(tmp_path / "r.csv", rows)))
    assert analysis.estimator is None
    assert any("no run has an R_ce below 0.2" in note for note in analysis.notes)
