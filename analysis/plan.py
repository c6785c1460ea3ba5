"""Plans: pick an LRG from one reference run instead of a whole sweep.

:func:`plan_lrgs` is pure (numbers in, a table out): for each candidate LRG it reads R_ce of the
reference run at the LRG's band, predicts the relative mIoU drop with an :class:`Estimator`, the
mIoU (reference mIoU times one minus the drop) and the FLOPs per IoU, and recommends the
feasible LRG with the least predicted FPI. The reference's own grid is measured, not predicted
(drop 0). A predicted drop of 1 or more is infeasible (no negative mIoU), and so is one above
``max_drop`` when given.

:func:`plan_reference` plans from a reference run (``analysis.references``, which reads them from
MLflow), counting each candidate's FLOPs (``trainables.flops``, counting only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.estimator import Estimator
from trainables.errors import InputError
from trainables.grids import band_of_lrg, paper_lrgs
from trainables.measures import fpi

if TYPE_CHECKING:
    import pandas as pd

    from analysis.references import ReferenceRun

#: Columns of :attr:`Plan.table`.
PLAN_COLUMNS: tuple[str, ...] = (
    "lrg",
    "nu_max",
    "r_ce",
    "predicted_drop",
    "predicted_miou",
    "gflops",
    "predicted_fpi",
    "feasible",
    "extrapolated",
)


def curve_at(curve: Mapping[int, float], nu: float) -> float:
    """R_ce at band ``nu`` from known points: exact, else linear between neighbours.

    NaN outside the known range.
    """
    if not curve:
        return math.nan
    if int(nu) == nu and int(nu) in curve:
        return float(curve[int(nu)])
    bands = np.array(sorted(curve), dtype=np.float64)
    if not bands[0] <= nu <= bands[-1]:
        return math.nan
    values = np.array([curve[int(k)] for k in bands], dtype=np.float64)
    return float(np.interp(nu, bands, values))


@dataclass(frozen=True)
class Plan:
    """A plan's table (one row per candidate LRG, largest first) and its recommendation."""

    table: pd.DataFrame
    recommended: int | None  # least predicted FPI among feasible rows; None if none is feasible
    reference_miou: float
    reference_lrg: int | None = None
    max_drop: float | None = None
    context: dict[str, Any] = field(default_factory=dict)  # run id, model, data set, ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: context, reference, recommendation and rows (NaN/inf as null)."""
        rows = [{k: json_value(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        return {
            **self.context,
            "reference_lrg": self.reference_lrg,
            "reference_miou": self.reference_miou,
            "max_drop": self.max_drop,
            "recommended": self.recommended,
            "rows": rows,
        }


def json_value(value: Any) -> Any:
    """A JSON-ready scalar: numpy types as Python's, NaN and inf as None."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def plan_lrgs(
    estimator: Estimator,
    reference_miou: float,
    r_ce_curve: Mapping[int, float],
    candidates: Mapping[int, float],
    max_drop: float | None = None,
    reference_lrg: int | None = None,
) -> Plan:
    """Predict drop, mIoU and FPI at each candidate LRG (``{lrg: gflops}``) and recommend one.

    ``r_ce_curve`` maps bands ``nu`` to the reference run's R_ce(nu) (interpolated between known
    bands). ``reference_lrg`` is the reference run's own grid: its row has drop 0 (measured) and the
    reference's R_ce at its own band (not 0: that holds only at the image's band).
    Predicted drops are clipped at 0 below; a drop >= 1 or > ``max_drop`` is infeasible.
    Ties in predicted FPI go to the larger LRG.
    """
    import pandas as pd

    if not 0.0 < reference_miou <= 1.0:
        raise InputError(f"reference mIoU {reference_miou} is not a fraction in (0, 1]")
    if not candidates:
        raise InputError("no candidate LRGs to plan for")
    if max_drop is not None and not 0.0 <= max_drop < 1.0:
        raise InputError(f"max drop {max_drop} is not a fraction in [0, 1)")
    rows = []
    for lrg in sorted(candidates, reverse=True):
        gflops = float(candidates[lrg])
        if int(lrg) != lrg or lrg < 1:
            raise InputError(f"candidate LRG {lrg!r} is not a grid size >= 1")
        if not gflops > 0:
            raise InputError(f"candidate LRG {lrg}: GFLOPs {gflops} is not > 0")
        rows.append(
            _plan_row(estimator, reference_miou, r_ce_curve, int(lrg), gflops, reference_lrg)
        )
    table = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    within = table["predicted_drop"] < 1.0
    if max_drop is not None:
        within &= table["predicted_drop"] <= max_drop + 1e-12
    table["feasible"] = within
    return Plan(
        table=table,
        recommended=recommend(table),
        reference_miou=float(reference_miou),
        reference_lrg=reference_lrg,
        max_drop=max_drop,
    )


def _plan_row(
    estimator: Estimator,
    reference_miou: float,
    curve: Mapping[int, float],
    lrg: int,
    gflops: float,
    reference_lrg: int | None,
) -> dict[str, Any]:
    nu = band_of_lrg(lrg)
    r_ce = curve_at(curve, nu)  # the reference's own band too: R_ce is 0 only at the image's
    if math.isnan(r_ce):
        known = f"{min(curve)}..{max(curve)}" if curve else "none"
        raise InputError(f"no R_ce for LRG {lrg} (band {nu}); the curve covers bands {known}")
    # the reference's mIoU is measured: no drop at its own grid
    drop = 0.0 if lrg == reference_lrg else max(0.0, estimator.predict_drop(r_ce))
    miou = reference_miou * (1.0 - drop) if drop < 1.0 else math.nan
    return {
        "lrg": lrg,
        "nu_max": nu,
        "r_ce": r_ce,
        "predicted_drop": drop,
        "predicted_miou": miou,
        "gflops": gflops,
        "predicted_fpi": fpi(gflops, miou) if drop < 1.0 else math.inf,
        "feasible": False,
        "extrapolated": lrg != reference_lrg and r_ce >= estimator.r_ce_max,
    }


def recommend(table: pd.DataFrame) -> int | None:
    """The feasible LRG with the least predicted FPI (ties: the larger LRG)."""
    feasible = table.loc[table["feasible"]]
    if feasible.empty:
        return None
    ordered = feasible.sort_values(["predicted_fpi", "lrg"], ascending=[True, False])
    return int(ordered["lrg"].iloc[0])


def plan_reference(
    estimator: Estimator,
    reference: ReferenceRun,
    lrgs: list[int] | None = None,
    max_drop: float | None = None,
) -> Plan:
    """Count FLOPs of each candidate LRG for the reference's architecture and plan.

    Without ``lrgs`` the candidates are the paper's sizes (``trainables.grids.paper_lrgs``).
    """
    chosen = (
        sorted(set(lrgs), reverse=True) if lrgs else paper_lrgs(reference.input_size, reference.lrg)
    )
    for s in chosen:
        if not 3 <= s <= reference.lrg:
            raise InputError(
                f"LRG {s} is outside [3, {reference.lrg}] (the reference run's native grid)"
            )
    candidates = {int(s): g for s, g in reference.grid_gflops(chosen).items() if s is not None}
    plan = plan_lrgs(
        estimator,
        reference.miou,
        reference.curve,
        candidates,
        max_drop=max_drop,
        reference_lrg=reference.lrg,
    )
    return dataclasses.replace(plan, context=reference.context())


__all__ = [
    "PLAN_COLUMNS",
    "Plan",
    "curve_at",
    "json_value",
    "plan_lrgs",
    "plan_reference",
    "recommend",
]
