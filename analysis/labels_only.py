"""Label-only prediction: the mIoU drop of each LRG from the labels' spectrum, before training.

The paper's future work ("estimate nu_max from the spectrum of groundtruth annotation"). An
*ideal predictor* built from the labels, ``Y = T * onehot(L)`` (``trainables.spectral.ideal``),
has a CE spectrum like a trained network's; its R_ce curve ``R_label(nu)`` stands in for the
reference run's, and the estimator turns it into a predicted drop at LRG ``s`` (band
``(s - 1) // 2``): ``max(0, a * R_label + b)``, 0 at the native grid (the grid the drop is
relative to). The label energy above each band (``energy_above``) is reported beside it as a
second regressor.

Where no pixel is ignored ``R_label = T / CE(T) * energy_above`` exactly, so the two regressors
rank LRGs alike and the temperature ``T`` only sets the scale the estimator sees. Default ``T``:
the ideal predictor's CE is 0.1 (about a trained network's), ``T = log((C-1) / (e^0.1 - 1))``
(3.35 for 4 classes, where ``T / CE = 33.5``).

:func:`labels_only_plan` is pure (curves in, a table out); :func:`label_curves` reads a data set
(torch imported there only); ``analysis.labels_only_backtest`` replays the prediction on a finished
sweep (Spearman rank correlation of predicted vs measured drop per group, the pick by least
predicted FPI and its FPI regret).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.estimator import PAPER_ESTIMATOR, Estimator
from analysis.plan import curve_at, json_value
from trainables.errors import InputError
from trainables.grids import band_of_lrg, native_grid_size, paper_lrgs

if TYPE_CHECKING:
    import pandas as pd

#: The regressors a label curve provides.
REGRESSORS: tuple[str, ...] = ("r_ce_label", "energy_above")
#: Columns of :attr:`LabelsOnlyPlan.table` (FLOPs and FPI columns are NaN when not counted).
LABELS_ONLY_COLUMNS: tuple[str, ...] = (
    "lrg",
    "nu_max",
    "r_ce_label",
    "energy_above",
    "predicted_drop",
    "gflops",
    "relative_fpi",
    "predicted_miou",
    "predicted_fpi",
    "feasible",
    "extrapolated",
)


# --------------------------------------------------------------------- label curves


@dataclass(frozen=True)
class LabelCurves:
    """A data set's label-only curves over the bands ``nu = 0 .. K`` and how they were read."""

    dataset: str
    split: str
    input_size: int
    num_classes: int
    n_images: int
    temperature: float
    ideal_ce: float  # CE of the ideal predictor (the same at every valid pixel)
    r_ce: dict[int, float]  # band -> R_label
    energy_above: dict[int, float]  # band -> fraction of label energy above it

    def curve(self, regressor: str = "r_ce_label") -> dict[int, float]:
        """The curve of ``regressor`` (``r_ce_label`` or ``energy_above``)."""
        return dict(self.r_ce if check_regressor(regressor) == "r_ce_label" else self.energy_above)

    def context(self) -> dict[str, Any]:
        """The facts a plan's JSON and header show."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "n_images": self.n_images,
            "temperature": self.temperature,
            "ideal_ce": self.ideal_ce,
        }


def check_regressor(regressor: str) -> str:
    """``regressor`` if it is one of :data:`REGRESSORS`, else an InputError listing them."""
    if regressor not in REGRESSORS:
        raise InputError(f"unknown regressor {regressor!r}; choose from: {', '.join(REGRESSORS)}")
    return regressor


def label_curves(
    dataset: str,
    *,
    data_root: str | None = None,
    split: str = "val",
    input_size: int = 513,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    temperature: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> LabelCurves:
    """Read ``dataset``'s labels through the evaluation crop at ``input_size`` (as a trial's
    evaluation does; ``seed`` matters for the synthetic sets only) and compute both curves.

    ``temperature`` None: the one whose ideal predictor has CE 0.1
    (``trainables.spectral.ideal.temperature_for_ce``).
    """
    from trainables.data import build_dataset
    from trainables.spectral.ideal import dataset_label_spectra, ideal_ce

    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit} must be >= 1")
    built = build_dataset(
        dataset,
        root=data_root,
        split=split,
        input_size=input_size,
        augment=False,
        num_classes=num_classes,
        seed=seed,
        **dict(options or {}),
    )
    spectra = dataset_label_spectra(
        built, temperature, limit=limit, progress=progress, desc=f"{dataset} {split}"
    )
    acc = spectra.accumulator
    return LabelCurves(
        dataset=dataset,
        split=split,
        input_size=int(input_size),
        num_classes=spectra.num_classes,
        n_images=spectra.n_images,
        temperature=acc.temperature,
        ideal_ce=ideal_ce(spectra.num_classes, acc.temperature),
        r_ce=acc.r_ce(),
        energy_above=acc.energy_above(),
    )


# --------------------------------------------------------------------- prediction


def predict_drops(
    curve: Mapping[int, float],
    lrgs: Sequence[int],
    estimator: Estimator,
    reference_lrg: int | None = None,
) -> dict[int, float]:
    """Predicted relative mIoU drop per LRG: ``max(0, estimator(curve(band)))``; 0 at
    ``reference_lrg`` (the grid the drop is relative to). Unclipped above: >= 1 is infeasible."""
    out = {}
    for s in lrgs:
        nu = band_of_lrg(int(s))
        value = curve_at(curve, nu)
        if math.isnan(value):
            known = f"{min(curve)}..{max(curve)}" if curve else "none"
            raise InputError(f"no label curve value for LRG {s} (band {nu}); it covers {known}")
        out[int(s)] = 0.0 if s == reference_lrg else max(0.0, estimator.predict_drop(value))
    return out


@dataclass(frozen=True)
class LabelsOnlyPlan:
    """A label-only plan: one row per candidate LRG (largest first) and the recommendation."""

    table: pd.DataFrame
    recommended: int | None
    rule: str  # how the recommendation was chosen (or why there is none)
    native_lrg: int
    regressor: str
    estimator: Estimator
    max_drop: float | None = None
    reference_miou: float | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and inf as null)."""
        rows = [{k: json_value(v) for k, v in row.items()} for row in self.table.to_dict("records")]
        return {
            **{k: json_value(v) for k, v in self.context.items()},
            "estimator": self.estimator.to_dict(),
            "regressor": self.regressor,
            "native_lrg": self.native_lrg,
            "max_drop": self.max_drop,
            "reference_miou": self.reference_miou,
            "recommended": self.recommended,
            "rule": self.rule,
            "rows": rows,
        }


def candidate_lrgs(lrgs: Sequence[int] | None, input_size: int, native: int) -> list[int]:
    """``lrgs`` (largest first, each in ``[3, native]``), by default the paper's sizes at the
    input (``trainables.grids.paper_lrgs``)."""
    chosen = (
        sorted({int(s) for s in lrgs}, reverse=True) if lrgs else paper_lrgs(input_size, native)
    )
    for s in chosen:
        if not 3 <= s <= native:
            raise InputError(
                f"LRG {s} is outside [3, {native}] (the native grid at input {input_size})"
            )
    return chosen


def labels_only_plan(
    curves: LabelCurves,
    estimator: Estimator = PAPER_ESTIMATOR,
    lrgs: Sequence[int] | None = None,
    *,
    native_lrg: int | None = None,
    gflops: Mapping[int, float] | None = None,
    max_drop: float | None = None,
    reference_miou: float | None = None,
    regressor: str = "r_ce_label",
) -> LabelsOnlyPlan:
    """Predict the drop of each candidate LRG from a label curve and pick one.

    ``regressor``: the curve the estimator reads, ``r_ce_label`` (the ideal predictor's R_ce,
    default) or ``energy_above`` (the label energy above the band).

    ``lrgs`` default: the paper's sizes at the input (``trainables.grids.paper_lrgs``).
    ``gflops`` (``{lrg: GFLOPs}``, must hold the native grid): adds ``relative_fpi`` =
    FPI / FPI(native) = ``(G_s / G_native) / (1 - drop)`` and recommends the least of it among
    feasible rows (drop < 1 and <= ``max_drop``); ``reference_miou`` (a fraction) adds absolute
    predicted mIoU and FPI (the same pick). Without FLOPs: the smallest feasible LRG (FLOPs grow
    with the grid) when ``max_drop`` is given, else none.
    """
    import pandas as pd

    native = int(native_lrg) if native_lrg is not None else native_grid_size(curves.input_size)
    if max_drop is not None and not 0.0 <= max_drop < 1.0:
        raise InputError(f"max drop {max_drop} is not a fraction in [0, 1)")
    if reference_miou is not None and not 0.0 < reference_miou <= 1.0:
        raise InputError(f"reference mIoU {reference_miou} is not a fraction in (0, 1]")
    chosen = candidate_lrgs(lrgs, curves.input_size, native)
    curve = curves.curve(regressor)
    drops = predict_drops(curve, chosen, estimator, native)
    if gflops is not None and native not in gflops:
        raise InputError(f"GFLOPs of the native grid {native} are needed for relative FPI")
    rows = []
    for s in chosen:
        nu = band_of_lrg(s)
        drop = drops[s]
        r_label = curve_at(curves.r_ce, nu)
        row: dict[str, Any] = {
            "lrg": s,
            "nu_max": nu,
            "r_ce_label": r_label,
            "energy_above": curve_at(curves.energy_above, nu),
            "predicted_drop": drop,
            "gflops": math.nan,
            "relative_fpi": math.nan,
            "predicted_miou": math.nan,
            "predicted_fpi": math.nan,
            "feasible": drop < 1.0 and (max_drop is None or drop <= max_drop + 1e-12),
            "extrapolated": s != native and curve_at(curve, nu) >= estimator.r_ce_max,
        }
        if gflops is not None:
            g = float(gflops[s])
            row["gflops"] = g
            row["relative_fpi"] = g / float(gflops[native]) / (1 - drop) if drop < 1 else math.inf
            if reference_miou is not None:
                miou = reference_miou * (1 - drop) if drop < 1 else math.nan
                row["predicted_miou"] = miou
                row["predicted_fpi"] = g / miou if drop < 1 else math.inf
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(LABELS_ONLY_COLUMNS))
    recommended, rule = _recommend(table, gflops is not None, max_drop)
    return LabelsOnlyPlan(
        table=table,
        recommended=recommended,
        rule=rule,
        native_lrg=native,
        regressor=regressor,
        estimator=estimator,
        max_drop=max_drop,
        reference_miou=reference_miou,
        context=curves.context(),
    )


def _recommend(
    table: pd.DataFrame, counted: bool, max_drop: float | None
) -> tuple[int | None, str]:
    feasible = table.loc[table["feasible"]]
    if counted:
        if feasible.empty:
            return None, "least predicted FPI: no feasible LRG"
        best = feasible.sort_values(["relative_fpi", "lrg"], ascending=[True, False])
        return int(best["lrg"].iloc[0]), "least predicted FPI"
    if max_drop is None:
        return None, "none: no FLOPs counted (--model) and no --max-drop"
    if feasible.empty:
        return None, "smallest LRG within max drop: none"
    return int(feasible["lrg"].min()), "smallest LRG within max drop (FLOPs grow with the grid)"


__all__ = [
    "LABELS_ONLY_COLUMNS",
    "REGRESSORS",
    "LabelCurves",
    "LabelsOnlyPlan",
    "candidate_lrgs",
    "check_regressor",
    "label_curves",
    "labels_only_plan",
    "predict_drops",
]
