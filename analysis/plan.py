"""Plans: pick an LRG from one reference run instead of a whole sweep.

:func:`plan_lrgs` is pure (numbers in, a table out): for each candidate LRG it reads R_ce of the
reference run at the LRG's band, predicts the relative mIoU drop with an :class:`Estimator`, the
mIoU (reference mIoU times one minus the drop) and the FLOPs per IoU, and recommends the
feasible LRG with the least predicted FPI. The reference's own grid is measured, not predicted
(drop 0). A predicted drop of 1 or more is infeasible (no negative mIoU), and so is one above
``max_drop`` when given.

:func:`reference_from_run` / :func:`references_from_experiment` read reference runs from MLflow
and :func:`plan_reference` counts each candidate's FLOPs (``trainables.flops``, counting only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.estimator import Estimator
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

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


def band_of_lrg(lrg: int) -> int:
    """Band limit of an ``s x s`` grid, ``(s - 1) // 2`` (as ``trainables.spectral``)."""
    return (int(lrg) - 1) // 2


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
        rows = [
            {k: _json_value(v) for k, v in row.items()} for row in self.table.to_dict("records")
        ]
        return {
            **self.context,
            "reference_lrg": self.reference_lrg,
            "reference_miou": self.reference_miou,
            "max_drop": self.max_drop,
            "recommended": self.recommended,
            "rows": rows,
        }


def _json_value(value: Any) -> Any:
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
        "predicted_fpi": gflops / miou if drop < 1.0 and miou > 0 else math.inf,
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


# --------------------------------------------------------------------- reference runs


@dataclass(frozen=True)
class ReferenceRun:
    """What a plan needs from a reference run: architecture, mIoU, R_ce curve."""

    run_id: str
    model: str
    dataset: str
    backbone: str
    input_size: int
    num_classes: int
    prune_rate: float
    decoder_prune_rate: float
    lrg: int  # the run's own (native) grid
    miou: float
    curve: dict[int, float]  # band -> R_ce of the reference run
    flops_convention: str = "compact"  # how the run's FLOPs were counted; plans count alike

    def context(self) -> dict[str, Any]:
        """The fields a plan's JSON and table header show."""
        return {
            "run_id": self.run_id,
            "model": self.model,
            "dataset": self.dataset,
            "backbone": self.backbone,
            "input_size": self.input_size,
            "prune_rate": self.prune_rate,
            "decoder_prune_rate": self.decoder_prune_rate,
        }


def default_lrgs(input_size: int, native: int) -> list[int]:
    """The paper's LRG sizes scaled to ``input_size`` (``trainables.spectral.paper_bands``),
    those between 3 and ``native``, plus ``native`` itself; largest first."""
    from trainables.spectral import lrg_of_band, paper_bands

    sizes = {lrg_of_band(nu) for nu in paper_bands(input_size).values()}
    return sorted({s for s in sizes if 3 <= s <= native} | {native}, reverse=True)


def plan_reference(
    estimator: Estimator,
    reference: ReferenceRun,
    lrgs: list[int] | None = None,
    max_drop: float | None = None,
) -> Plan:
    """Count FLOPs of each candidate LRG for the reference's architecture and plan."""
    from trainables.flops import architecture_flops

    chosen = (
        sorted(set(lrgs), reverse=True)
        if lrgs
        else default_lrgs(reference.input_size, reference.lrg)
    )
    for s in chosen:
        if not 3 <= s <= reference.lrg:
            raise InputError(
                f"LRG {s} is outside [3, {reference.lrg}] (the reference run's native grid)"
            )
    candidates = {
        s: architecture_flops(
            reference.model,
            reference.backbone,
            reference.input_size,
            reference.num_classes,
            s,
            reference.prune_rate,
            reference.decoder_prune_rate,
            convention=reference.flops_convention,
        ).gflops
        for s in chosen
    }
    plan = plan_lrgs(
        estimator,
        reference.miou,
        reference.curve,
        candidates,
        max_drop=max_drop,
        reference_lrg=reference.lrg,
    )
    return Plan(
        table=plan.table,
        recommended=plan.recommended,
        reference_miou=plan.reference_miou,
        reference_lrg=plan.reference_lrg,
        max_drop=plan.max_drop,
        context=reference.context(),
    )


def reference_from_run(tracking_uri: str, run_id: str) -> ReferenceRun:
    """Read a reference run's params, final mIoU and R_ce curve from MLflow."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from analysis.runs import points_curve, quiet_mlflow, read_spectrum, spectrum_curve

    quiet_mlflow()
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise InputError(f"no run {run_id!r} at {tracking_uri}") from None
    params = run.data.params
    metrics = run.data.metrics
    where = f"run {run_id}"
    if "miou" not in metrics or not math.isfinite(metrics["miou"]):
        raise InputError(f"{where} has no mIoU metric; is it a finished trial run?")
    spectrum = read_spectrum(f"{run.info.artifact_uri.rstrip('/')}/spectrum.csv", tracking_uri)
    curve = spectrum_curve(spectrum) if spectrum is not None else {}
    if not curve:
        curve = points_curve({k: v for k, v in metrics.items()})
    if not curve:
        raise InputError(f"{where} has neither a spectrum.csv artifact nor r_ce_nu* metrics")
    return _reference(params, run_id, float(metrics["miou"]), curve, where)


def _reference(
    params: Mapping[str, Any], run_id: str, miou: float, curve: dict[int, float], where: str
) -> ReferenceRun:
    def need(name: str) -> str:
        value = params.get(name)
        if value is None or str(value) in ("", "None", "nan"):
            raise InputError(f"{where} lacks param {name!r}")
        return str(value)

    def number(name: str, default: float | None = None) -> float:
        value = params.get(name)
        if (value is None or str(value) in ("", "None", "nan")) and default is not None:
            return default
        try:
            return float(need(name))
        except ValueError:
            raise InputError(
                f"{where}: param {name} = {params.get(name)!r} is not a number"
            ) from None

    lrg_text = params.get("lrg_effective") or params.get("lrg")
    lrg = int(float(lrg_text)) if lrg_text not in (None, "None") else int(number("native_lrg"))
    native = params.get("native_lrg")
    if native not in (None, "", "None") and lrg < int(float(str(native))):
        raise InputError(
            f"{where} runs at LRG {lrg}, not at its native grid {int(float(str(native)))}; "
            "plan from the run at the native grid"
        )
    annotation = params.get("annotation_nu_max")
    input_size = int(number("input_size"))
    if annotation not in (None, "", "None") and float(annotation) < (input_size - 1) // 2:
        raise InputError(
            f"{where} trained on block-wise labels (annotation_nu_max {annotation}); plan from a "
            "run with pixel-wise labels"
        )
    return ReferenceRun(
        run_id=run_id,
        model=need("model"),
        dataset=need("dataset"),
        backbone=need("backbone"),
        input_size=input_size,
        num_classes=_num_classes(params, where),
        prune_rate=number("prune_rate", 0.0),
        decoder_prune_rate=number("decoder_prune_rate", 0.0),
        lrg=lrg,
        miou=miou,
        curve=curve,
        flops_convention=str(params.get("flops_convention") or "compact"),
    )


def _num_classes(params: Mapping[str, Any], where: str) -> int:
    """The run's class count: its param, else the data set's fixed count, else the data set's."""
    value = params.get("num_classes")
    if value not in (None, "", "None", "nan"):
        return int(float(str(value)))
    dataset = str(params.get("dataset"))
    from trainables.config import FIXED_NUM_CLASSES

    if dataset in FIXED_NUM_CLASSES:
        return FIXED_NUM_CLASSES[dataset]
    try:
        from trainables.data import build_dataset

        root = params.get("data_root")
        built = build_dataset(
            dataset,
            root=None if root in (None, "None") else root,
            split="val",
            input_size=int(float(str(params.get("input_size", 513)))),
        )
        return int(built.num_classes)
    except Exception as err:
        raise InputError(
            f"{where} has num_classes=None and its data set {dataset!r} could not be opened to "
            f"count them ({type(err).__name__})"
        ) from None


def references_from_experiment(tracking_uri: str, experiment: str) -> list[ReferenceRun]:
    """One reference per pixel-wise group of an experiment: the run(s) at the native grid.

    Repeats (seeds) are averaged: mean mIoU and mean R_ce curve; params from the first run.
    """
    from analysis.runs import load_runs_mlflow, search_runs_frame
    from analysis.sweep import prepare_runs, truncation_references

    runs = load_runs_mlflow(tracking_uri, experiment)
    rows = prepare_runs(runs)
    refs = truncation_references(rows)
    if refs.empty:
        raise InputError(f"experiment {experiment!r} has no reference run at a native grid")
    table = search_runs_frame(tracking_uri, experiment).set_index("run_id")
    out = []
    for ref in refs.to_dict("records"):
        first = str(ref["run_ids"][0])
        params = {
            c.removeprefix("params."): v
            for c, v in table.loc[first].items()
            if str(c).startswith("params.")
        }
        curve = ref["curve"]
        if not curve:
            raise InputError(f"reference run {first} has no R_ce curve (spectrum.csv or r_ce_nu*)")
        out.append(_reference(params, first, float(ref["miou"]), curve, f"run {first}"))
    return out
