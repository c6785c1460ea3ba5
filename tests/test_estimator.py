"""The estimator's hygiene (residual statistics, prediction interval, warnings, the saturating
form, files) and the adaptive strategy's drop model, each against a computation by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analysis import PAPER_ESTIMATOR, analyze, load_runs_csv
from analysis.drop_model import DropModel, Observation, Scale
from analysis.estimator import Estimator, fit_estimator
from analysis.estimator import _statistics as statistics
from trainables.errors import InputError

RNG = np.random.default_rng(0)


def test_interval_is_the_ols_prediction_interval() -> None:
    """Against s^2 (1 + x0' (X'X)^-1 x0), the matrix form of the OLS prediction variance."""
    x = np.linspace(0.0, 0.19, 12)  # all below the fit bound 0.2
    y = 0.7 * x + 0.002 + RNG.normal(0, 0.01, x.size)
    est = fit_estimator(x, y)
    design = np.column_stack([x, np.ones_like(x)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    s2 = float(np.sum((y - design @ coef) ** 2)) / (x.size - 2)
    for x0 in (0.05, 0.3):
        row = np.array([x0, 1.0])
        half = 1.6448536 * math.sqrt(s2 * (1 + row @ np.linalg.inv(design.T @ design) @ row))
        low, high = est.interval(x0, level=0.9)
        assert low == pytest.approx(row @ coef - half, rel=1e-6)
        assert high == pytest.approx(row @ coef + half, rel=1e-6)
    wide = est.interval(0.5)
    assert wide[1] - wide[0] > high - low  # wider further out


def test_paper_estimator_statistics_are_its_residuals_on_the_paper(paper_runs_csv: Path) -> None:
    runs = load_runs_csv(paper_runs_csv)
    drops = analyze(runs.loc[runs["annotation_nu_max"].isna()]).drops.drop_duplicates("run_id")
    points = drops.loc[drops["r_ce"] < 0.2]
    assert len(points) == 148
    labels = np.asarray((points["model"] + "/" + points["dataset"]).tolist(), dtype=object)
    got = statistics(PAPER_ESTIMATOR, points["r_ce"].to_numpy(), points["drop"].to_numpy(), labels)
    residual = points["drop"] - (0.6725 * points["r_ce"] + 0.0022)
    assert PAPER_ESTIMATOR.residual_std == pytest.approx(
        math.sqrt(float((residual**2).sum()) / 146), rel=1e-3
    )
    for name, value in got.items():
        assert getattr(PAPER_ESTIMATOR, name) == pytest.approx(value, rel=1e-3), name


@pytest.mark.parametrize(
    ("xs", "ys", "extrapolated", "message"),
    [
        ([0.01, 0.05, 0.1], [0.0, 0.03, 0.07], 0.0, "only 3 points"),
        ([0.01, 0.05, 0.1, 0.15, 0.19], [0.1, 0.07, 0.05, 0.02, 0.0], 0.0, "slope"),
        ([0.01, 0.05, 0.1, 0.15, 0.19], [0.05, 0.0, 0.09, 0.0, 0.06], 0.0, "R^2"),
        ([0.01, 0.05, 0.1, 0.15, 0.19], [0.0, 0.03, 0.07, 0.1, 0.13], 0.75, "75% of the points"),
    ],
)
def test_fit_warnings(xs: list[float], ys: list[float], extrapolated: float, message: str) -> None:
    warnings = fit_estimator(xs, ys).warnings(extrapolated)
    assert len(warnings) == 1 and message in warnings[0]


def test_saturating_form_recovers_its_bend_and_keeps_the_slope_at_zero() -> None:
    x = np.linspace(0.0, 3.0, 40)
    y = 0.01 + 0.8 * 0.3 * (1 - np.exp(-x / 0.3))
    est = fit_estimator(x, y, form="saturating")
    assert est.bend == pytest.approx(0.3, rel=0.07)  # the grid's step is 12 %
    assert est.slope == pytest.approx(0.8, rel=0.1) and est.n == 40  # every point
    assert est.predict_drop(10.0) == pytest.approx(0.01 + 0.8 * 0.3, rel=0.1)  # it saturates
    assert "exp(-R_ce" in est.describe()


def test_estimator_file_keeps_what_the_interval_needs(tmp_path: Path) -> None:
    est = fit_estimator([0.01, 0.05, 0.1, 0.15], [0.0, 0.03, 0.07, 0.1], clusters=list("aabb"))
    back = Estimator.from_json(est.to_json(tmp_path / "e.json"))
    assert back == est and math.isfinite(back.scale_spread)
    old = {"slope": 0.7, "intercept": 0.0, "r2": 0.9, "n": 10}  # a file of old: no statistics
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert math.isnan(Estimator.from_json(tmp_path / "old.json").interval(0.1)[0])
    (tmp_path / "bad.json").write_text(json.dumps({**old, "form": "saturating"}))
    with pytest.raises(InputError, match="needs field 'bend'"):
        Estimator.from_json(tmp_path / "bad.json")


def test_drop_model_one_observation_by_hand() -> None:
    """With the reference alone (drop 0 at R0), the posterior at R is the prior mean plus
    k(R, R0) / (k(R0, R0) + noise^2) times the residual at R0, the GP formula by hand."""
    est = PAPER_ESTIMATOR
    model = DropModel(est)
    scale = Scale(1.2, 0.04)
    r0, r = 0.01, 0.05
    f0, f = est.predict_drop(r0), est.predict_drop(r)
    shape = model.relative**2 * math.exp(-((math.log(r) - math.log(r0)) ** 2) / (2 * 0.7**2))
    k_rr0 = f * f0 * (scale.var + shape)
    k_r0r0 = f0 * f0 * (scale.var + model.relative**2)
    k_rr = f * f * (scale.var + model.relative**2)
    gain = k_rr0 / (k_r0r0 + model.noise**2)
    (belief,) = model.predict(scale, [Observation(r0, 0.0)], [r])
    assert belief.mean == pytest.approx(1.2 * f + gain * (0.0 - 1.2 * f0))
    variance = k_rr - gain * k_rr0 + model.noise**2
    assert belief.sd == pytest.approx(math.sqrt(variance))


def test_drop_model_pins_measured_points_and_learns_the_scale() -> None:
    model = DropModel(PAPER_ESTIMATOR)
    measured = [Observation(0.01, 0.0), Observation(0.1, 0.2)]  # far above the line (0.07)
    prior = model.scale([])
    near, far = model.predict(prior, measured, [0.1, 2.0])
    assert near.mean == pytest.approx(0.2, abs=3 * model.noise) and near.sd < 2 * model.noise
    assert far.sd > near.sd
    # other groups of the cluster that drop twice the line raise this group's scale
    doubled = [Observation(r, 2 * PAPER_ESTIMATOR.predict_drop(r)) for r in (0.05, 0.1, 0.2)]
    some, more = model.scale([doubled]), model.scale([doubled, doubled, doubled])
    assert prior.mean == pytest.approx(1.0)
    assert 1.0 < some.mean < more.mean < 2.0 and more.var < some.var
