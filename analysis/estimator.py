"""The mIoU-drop estimator: a least-squares line ``drop = slope * R_ce + intercept``.

Fitted over the points with ``R_ce < r_ce_max`` (paper: 0.2), where the relation is close to
linear; reported with R^2 and the number of points. :data:`PAPER_ESTIMATOR` is the paper's fit
(slope 0.6725, intercept 0.0022, R^2 0.91), usable before any sweep has run.

The paper calls the relation "positive while non-linear"; the ``saturating`` form
``drop = intercept + slope * c * (1 - exp(-R_ce / c))`` has the line's slope at R_ce = 0 and bends
over beyond ``c``; it is fitted on every point (its purpose is the range beyond the line's).
Both forms are a line in a feature ``g(R_ce)`` (``R_ce`` itself, or ``c (1 - exp(-R_ce / c))``),
so both carry what an ordinary least-squares prediction interval needs: the residual standard
deviation, the number of points, the feature's mean and spread (:meth:`Estimator.interval`).
Two more statistics serve the adaptive strategy (``analysis.drop_model``): the relative residual
(RMS of ``(drop - predicted) / predicted``) and the spread of the per-cluster scale factors
(clusters: model and data set), i.e. how much one data set's drops depart from the pooled line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trainables.errors import InputError

#: Default upper bound on R_ce of the points the line is fitted to (paper: 0.2).
DEFAULT_R_CE_MAX = 0.2
#: Estimator forms: the paper's line, and a monotone saturating curve for R_ce beyond it.
LINEAR, SATURATING = "linear", "saturating"
FORMS: tuple[str, ...] = (LINEAR, SATURATING)
#: Bend scales ``c`` the saturating fit tries (log-spaced; a large ``c`` is the line).
_BENDS = tuple(float(c) for c in np.geomspace(0.02, 20.0, 61))


@dataclass(frozen=True)
class Estimator:
    """``drop = slope * R_ce + intercept``, valid for ``R_ce < r_ce_max``."""

    slope: float
    intercept: float
    r2: float  # coefficient of determination on the fitted points (NaN if undefined)
    n: int  # number of points fitted
    r_ce_max: float = DEFAULT_R_CE_MAX
    fitted_on: dict[str, Any] = field(default_factory=dict)  # data sets, models, kinds, runs
    form: str = LINEAR  # LINEAR or SATURATING
    bend: float | None = None  # SATURATING: the scale c of 1 - exp(-R_ce / c)
    # what the prediction interval needs (NaN when unknown, e.g. an estimator file of old)
    residual_std: float = math.nan  # sqrt(SSR / (n - 2)) on the fitted points
    feature_mean: float = math.nan  # mean of g(R_ce) over the fitted points
    feature_sxx: float = math.nan  # sum of (g - mean)^2 over the fitted points
    relative_residual: float = math.nan  # RMS of (drop - predicted) / predicted
    scale_spread: float = math.nan  # std of the per-cluster scale (drop / predicted) factors

    def feature(self, r_ce: float) -> float:
        """``g(R_ce)``: the regressor the line is fitted on (R_ce, or its saturating bend)."""
        if self.form == SATURATING and self.bend is not None:
            return float(self.bend * -math.expm1(-float(r_ce) / self.bend))
        return float(r_ce)

    @overload
    def predict_drop(self, r_ce: float) -> float: ...
    @overload
    def predict_drop(self, r_ce: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def predict_drop(self, r_ce: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
        """The predicted relative mIoU drop at ``r_ce`` (the raw curve, not clipped)."""
        if isinstance(r_ce, np.ndarray):
            return self.slope * _features(r_ce, self.form, self.bend) + self.intercept
        return float(self.slope * self.feature(r_ce) + self.intercept)

    def interval(self, r_ce: float, level: float = 0.9) -> tuple[float, float]:
        """The ordinary least-squares prediction interval of the drop at ``r_ce`` (normal
        quantile): ``mean +- z s sqrt(1 + 1/n + (g - mean_g)^2 / Sxx)``. It widens away from
        the fitted points; (NaN, NaN) when the estimator lacks its residual statistics."""
        mean = self.predict_drop(r_ce)
        if not (self.n > 2 and math.isfinite(self.residual_std) and self.feature_sxx > 0):
            return math.nan, math.nan
        z = NormalDist().inv_cdf(0.5 + level / 2)
        g = self.feature(r_ce)
        spread = 1 + 1 / self.n + (g - self.feature_mean) ** 2 / self.feature_sxx
        half = z * self.residual_std * math.sqrt(spread)
        return mean - half, mean + half

    def warnings(self, extrapolated: float = 0.0) -> list[str]:
        """One line per reason not to trust this fit: n < 5, a negative slope, R^2 < 0.5, or
        ``extrapolated`` (the share of the points it is used for beyond ``r_ce_max``) > 0.5."""
        found = []
        if 0 < self.n < 5:
            found.append(f"estimator fitted on only {self.n} points (fewer than 5)")
        if self.slope < 0:
            found.append(f"estimator slope {self.slope:.4f} is negative: drop falls as R_ce grows")
        if math.isfinite(self.r2) and self.r2 < 0.5:
            found.append(f"estimator R^2 = {self.r2:.3f} is below 0.5")
        if extrapolated > 0.5:
            found.append(
                f"{extrapolated:.0%} of the points lie beyond R_ce {self.r_ce_max:g}, where the "
                f"{self.form} estimator extrapolates"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN statistics as null)."""
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, float) and math.isnan(value):
                out[name] = None
        return out

    def to_json(self, path: str | Path) -> Path:
        """Write the estimator as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str = "estimator") -> Estimator:
        """Build from a dict, checking every field (InputError naming the bad one)."""
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for name in ("slope", "intercept"):
            values[name] = _number(data, name, where, required=True)
        values["r2"] = _number(data, "r2", where, required=False)
        for name in _STATISTICS:
            values[name] = _number(data, name, where, required=False)
        form = data.get("form", LINEAR)
        if form not in FORMS:
            raise InputError(f"{where}: field 'form' = {form!r} is not one of {', '.join(FORMS)}")
        values["form"] = form
        bend = _number(data, "bend", where, required=False, default=None)
        if form == SATURATING and not (bend is not None and bend > 0):
            raise InputError(f"{where}: a saturating estimator needs field 'bend' > 0")
        values["bend"] = bend
        values["r_ce_max"] = _number(data, "r_ce_max", where, required=False, default=None)
        if values["r_ce_max"] is None:
            values["r_ce_max"] = DEFAULT_R_CE_MAX
        elif not values["r_ce_max"] > 0:
            raise InputError(f"{where}: field 'r_ce_max' = {values['r_ce_max']} must be > 0")
        n = data.get("n", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"{where}: field 'n' = {n!r} is not a count (an integer >= 0)")
        fitted_on = data.get("fitted_on", {})
        if not isinstance(fitted_on, Mapping):
            raise InputError(f"{where}: field 'fitted_on' = {fitted_on!r} is not an object")
        return cls(n=n, fitted_on=dict(fitted_on), **values)

    @classmethod
    def from_json(cls, path: str | Path) -> Estimator:
        """Read an estimator file written by :meth:`to_json` (InputError on a bad file)."""
        path = Path(path)
        where = f"estimator file {str(path)!r}"
        if not path.is_file():
            raise InputError(f"{where} does not exist")
        try:
            data = json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{where} is not JSON ({err})") from None
        return cls.from_dict(data, where)

    def describe(self) -> str:
        """One line: the curve, R^2, n and the range it holds in."""
        r2 = "nan" if math.isnan(self.r2) else f"{self.r2:.3f}"
        n = f", n = {self.n}" if self.n else ""
        if self.form == SATURATING and self.bend is not None:
            c = f"{self.bend:.3g}"
            return (
                f"drop = {self.slope:.4f} * {c} * (1 - exp(-R_ce / {c})) "
                f"{_signed(self.intercept)}  (R^2 = {r2}{n}, every R_ce)"
            )
        return (
            f"drop = {self.slope:.4f} * R_ce {_signed(self.intercept)}  "
            f"(R^2 = {r2}{n}, R_ce < {self.r_ce_max:g})"
        )


#: Optional residual statistics of an estimator file.
_STATISTICS: tuple[str, ...] = (
    "residual_std",
    "feature_mean",
    "feature_sxx",
    "relative_residual",
    "scale_spread",
)


def _features(r_ce: NDArray[np.float64], form: str, bend: float | None) -> NDArray[np.float64]:
    if form == SATURATING and bend is not None:
        return np.asarray(-bend * np.expm1(-r_ce / bend), dtype=np.float64)
    return r_ce


def _signed(value: float, digits: int = 4) -> str:
    """``+ 0.0022`` / ``- 0.0015`` (never ``+ -0.0015``)."""
    negative = round(value, digits) < 0
    return f"{'-' if negative else '+'} {abs(value):.{digits}f}"


def _number(
    data: Mapping[str, Any], name: str, where: str, required: bool, default: Any = math.nan
) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise InputError(f"{where}: missing field {name!r} (a number)")
        return default
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: field {name!r} = {value!r} is not a finite number")
    return float(value)


#: Residual statistics of the paper's line on the paper's own Tables 1, 2 and 4 (the 148
#: truncation points with R_ce < 0.2; ``tests/test_backtest.py`` recomputes them).
PAPER_RESIDUAL_STD = 0.01351
PAPER_FEATURE_MEAN = 0.03922
PAPER_FEATURE_SXX = 0.4021
PAPER_RELATIVE_RESIDUAL = 0.5107
PAPER_SCALE_SPREAD = 0.1714

#: The paper's fit over PASCAL, DeepGlobe and Cityscapes, both models, R_ce < 0.2 (Fig. 5b).
PAPER_ESTIMATOR = Estimator(
    slope=0.6725,
    intercept=0.0022,
    r2=0.91,
    n=0,  # the paper does not give the count
    r_ce_max=DEFAULT_R_CE_MAX,
    fitted_on={
        "source": "paper (arXiv 2012.14123, Fig. 5b)",
        "datasets": ["voc", "deepglobe", "cityscapes"],
        "models": ["deeplabv3plus", "dan"],
        "kinds": ["truncation"],
        "statistics": "the paper's line on its own Tables 1, 2 and 4 (148 points, R_ce < 0.2)",
    },
    # the paper gives no residuals: these are its line's on the paper's tables (tests check them)
    residual_std=PAPER_RESIDUAL_STD,
    feature_mean=PAPER_FEATURE_MEAN,
    feature_sxx=PAPER_FEATURE_SXX,
    relative_residual=PAPER_RELATIVE_RESIDUAL,
    scale_spread=PAPER_SCALE_SPREAD,
)


def load_estimator(value: str | Path) -> Estimator:
    """``"paper"`` -> :data:`PAPER_ESTIMATOR`; anything else is an estimator.json path."""
    if str(value).strip().lower() == "paper":
        return PAPER_ESTIMATOR
    return Estimator.from_json(value)


def fit_line(x: ArrayLike, y: ArrayLike) -> tuple[float, float, float]:
    """Least-squares ``y = a x + b``; returns ``(a, b, R^2)`` (R^2 NaN when y is constant).

    At least two distinct x values are needed (InputError otherwise).
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise InputError(f"fit_line needs two 1-D arrays of one length, got {xs.shape}, {ys.shape}")
    if len(np.unique(xs)) < 2:
        raise InputError(
            f"cannot fit the estimator: {len(xs)} point(s) with {len(np.unique(xs))} distinct "
            "R_ce value(s); need at least 2"
        )
    design = np.column_stack([xs, np.ones_like(xs)])
    (a, b), *_ = np.linalg.lstsq(design, ys, rcond=None)
    residual = ys - (a * xs + b)
    total = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else math.nan
    return float(a), float(b), r2


def fit_estimator(
    r_ce: Sequence[float] | NDArray[np.float64],
    drop: Sequence[float] | NDArray[np.float64],
    r_ce_max: float = DEFAULT_R_CE_MAX,
    fitted_on: Mapping[str, Any] | None = None,
    clusters: Sequence[Any] | None = None,
    form: str = LINEAR,
) -> Estimator:
    """Fit the estimator with its residual statistics (NaN points skipped).

    ``linear``: the line over the points with ``R_ce < r_ce_max``. ``saturating``: the bend
    ``c`` (from a log-spaced grid) and its line in ``c (1 - exp(-R_ce / c))`` with the least
    squared error over every point. ``clusters`` (one label per point, e.g. model and data set)
    give the spread of the per-cluster scale factors.
    """
    if not r_ce_max > 0:
        raise InputError(f"r_ce_max = {r_ce_max} must be > 0")
    if form not in FORMS:
        raise InputError(f"estimator form {form!r} is not one of {', '.join(FORMS)}")
    xs = np.asarray(r_ce, dtype=np.float64)
    ys = np.asarray(drop, dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    if form == LINEAR:
        keep &= xs < r_ce_max
    labels = np.asarray(list(clusters) if clusters is not None else [0] * len(xs), dtype=object)
    xs, ys, labels = xs[keep], ys[keep], labels[keep]
    bend = _best_bend(xs, ys) if form == SATURATING else None
    g = _features(xs, form, bend)
    a, b, r2 = fit_line(g, ys)
    estimator = Estimator(
        a, b, r2, int(keep.sum()), float(r_ce_max), dict(fitted_on or {}), form, bend
    )
    stats: dict[str, Any] = _statistics(estimator, xs, ys, labels)
    return dataclasses.replace(estimator, **stats)


def _best_bend(xs: NDArray[np.float64], ys: NDArray[np.float64]) -> float:
    """The bend scale whose least-squares line in ``c (1 - exp(-R / c))`` fits best."""
    errors = []
    for bend in _BENDS:
        g = _features(xs, SATURATING, bend)
        design = np.column_stack([g, np.ones_like(g)])
        coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
        errors.append(float(np.sum((ys - design @ coef) ** 2)))
    return _BENDS[int(np.argmin(errors))]


def _statistics(
    estimator: Estimator,
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    labels: NDArray[Any],
) -> dict[str, float]:
    """Residual std, the feature's mean and spread, the relative residual and the spread of
    per-cluster scale factors, on the fitted points."""
    g = _features(xs, estimator.form, estimator.bend)
    predicted = estimator.predict_drop(xs)
    n = len(xs)
    ssr = float(np.sum((ys - predicted) ** 2))
    stats = {
        "residual_std": math.sqrt(ssr / (n - 2)) if n > 2 else math.nan,
        "feature_mean": float(g.mean()),
        "feature_sxx": float(np.sum((g - g.mean()) ** 2)),
        "relative_residual": math.nan,
        "scale_spread": math.nan,
    }
    # relative error where the prediction is not tiny (a 0.1-point drop says little)
    sizeable = predicted > 0.01
    if sizeable.any():
        ratio = (ys[sizeable] - predicted[sizeable]) / predicted[sizeable]
        stats["relative_residual"] = float(np.sqrt(np.mean(ratio**2)))
    scales = []
    for label in dict.fromkeys(labels.tolist()):
        part = (labels == label) & sizeable
        if part.any():
            f = predicted[part]
            scales.append(float(np.sum(f * ys[part]) / np.sum(f * f)))
    if len(scales) > 1:
        stats["scale_spread"] = float(np.std(scales))
    return stats
