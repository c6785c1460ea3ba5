"""The mIoU-drop estimator: a least-squares line ``drop = slope * R_ce + intercept``.

Fitted over the points with ``R_ce < r_ce_max`` (paper: 0.2), where the relation is close to
linear; reported with R^2 and the number of points. :data:`PAPER_ESTIMATOR` is the paper's fit
(slope 0.6725, intercept 0.0022, R^2 0.91), usable before any sweep has run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from trainables.errors import InputError

#: Default upper bound on R_ce of the points the line is fitted to (paper: 0.2).
DEFAULT_R_CE_MAX = 0.2


@dataclass(frozen=True)
class Estimator:
    """``drop = slope * R_ce + intercept``, valid for ``R_ce < r_ce_max``."""

    slope: float
    intercept: float
    r2: float  # coefficient of determination on the fitted points (NaN if undefined)
    n: int  # number of points fitted
    r_ce_max: float = DEFAULT_R_CE_MAX
    fitted_on: dict[str, Any] = field(default_factory=dict)  # data sets, models, kinds, runs

    @overload
    def predict_drop(self, r_ce: float) -> float: ...
    @overload
    def predict_drop(self, r_ce: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def predict_drop(self, r_ce: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
        """The predicted relative mIoU drop at ``r_ce`` (the raw line, not clipped)."""
        if isinstance(r_ce, np.ndarray):
            return self.slope * r_ce + self.intercept
        return float(self.slope * float(r_ce) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN R^2 as null)."""
        out = asdict(self)
        out["r2"] = None if math.isnan(self.r2) else self.r2
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
        """One line: the line, R^2, n and the range it holds in."""
        r2 = "nan" if math.isnan(self.r2) else f"{self.r2:.3f}"
        n = f", n = {self.n}" if self.n else ""
        return (
            f"drop = {self.slope:.4f} * R_ce {_signed(self.intercept)}  "
            f"(R^2 = {r2}{n}, R_ce < {self.r_ce_max:g})"
        )


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
    },
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
) -> Estimator:
    """Fit the line over the points with ``R_ce < r_ce_max`` (NaN points skipped)."""
    if not r_ce_max > 0:
        raise InputError(f"r_ce_max = {r_ce_max} must be > 0")
    xs = np.asarray(r_ce, dtype=np.float64)
    ys = np.asarray(drop, dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs < r_ce_max)
    a, b, r2 = fit_line(xs[keep], ys[keep])
    return Estimator(a, b, r2, int(keep.sum()), float(r_ce_max), dict(fitted_on or {}))
