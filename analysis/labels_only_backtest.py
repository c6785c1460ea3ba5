"""Label-only prediction replayed on a finished sweep: how well the drops predicted from the
labels' spectrum alone (``analysis.labels_only``) rank a group's LRGs (Spearman against the
measured drops) and what its FPI pick costs (regret against the measured optimum)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.estimator import PAPER_ESTIMATOR, Estimator
from analysis.labels_only import predict_drops
from analysis.plan import curve_at
from trainables.errors import InputError
from trainables.grids import band_of_lrg

if TYPE_CHECKING:
    import pandas as pd

#: Columns of :attr:`LabelsOnlyBacktest.groups`.
BACKTEST_COLUMNS: tuple[str, ...] = (
    "label",
    "model",
    "dataset",
    "prune_rate",
    "reference_lrg",
    "reference_miou",
    "n_lrgs",
    "spearman",
    "pick_lrg",
    "optimal_lrg",
    "exact",
    "regret",
)


def spearman(
    x: Sequence[float] | np.ndarray | pd.Series, y: Sequence[float] | np.ndarray | pd.Series
) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for < 2 points or constant ranks."""
    import pandas as pd

    a = pd.Series(np.asarray(x, dtype=np.float64))
    b = pd.Series(np.asarray(y, dtype=np.float64))
    keep = a.notna() & b.notna()
    a, b = a[keep].rank(), b[keep].rank()
    if len(a) < 2 or a.nunique() < 2 or b.nunique() < 2:
        return math.nan
    return float(np.corrcoef(a.to_numpy(), b.to_numpy())[0, 1])


@dataclass(frozen=True)
class LabelsOnlyBacktest:
    """Per group (:data:`BACKTEST_COLUMNS`), per row, and the overall summary."""

    groups: pd.DataFrame
    rows: pd.DataFrame
    summary: dict[str, Any]


def labels_only_backtest(
    runs: pd.DataFrame,
    label_curves: Mapping[str, Mapping[int, float]],
    estimator: Estimator = PAPER_ESTIMATOR,
) -> LabelsOnlyBacktest:
    """Replay the label-only prediction on a finished sweep's truncation groups.

    ``runs``: a runs table (``analysis.load_runs_mlflow``), prepared here (seeds averaged);
    ``label_curves``: data set -> ``{nu: regressor}`` (``LabelCurves.curve()``). Per group with
    a reference at the native grid and a curve for its data set: the predicted drop of every LRG
    (0 at the reference) against the measured ``(ref mIoU - mIoU) / ref mIoU``: Spearman over
    the group's LRGs (reference included); the pick is the least predicted FPI (GFLOPs of the
    rows, predicted mIoU = ref mIoU * (1 - predicted drop); ties: the larger LRG), its regret
    ``FPI(pick) / FPI(optimum) - 1`` with the optimum the least measured FPI.
    Summary: groups, mean Spearman, pooled Spearman (every non-reference row of every group),
    exact picks, mean and max regret.
    """
    import pandas as pd

    from analysis.groups import TRUNCATION, find_groups, is_exact, least_fpi, prepare_runs
    from analysis.runs import warn

    prepared = runs if {"kind", "n_runs"} <= set(runs.columns) else prepare_runs(runs)
    records: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    skipped: list[str] = []
    for group in find_groups(prepared):
        if group.kind != TRUNCATION or group.reference is None:
            continue
        if group.unanchored:
            skipped.append(group.label)
            warn(f"group {group.label}: {group.unanchored}; left out")
            continue
        dataset = str(group.key["dataset"])
        if dataset not in label_curves:
            skipped.append(group.label)
            warn(f"group {group.label}: no label curve for data set {dataset!r}; left out")
            continue
        ref = group.reference
        ref_lrg, ref_miou = int(ref["lrg"]), float(ref["miou"])
        rows = group.rows.sort_values("lrg", ascending=False)
        lrgs = [int(s) for s in rows["lrg"]]
        drops = predict_drops(label_curves[dataset], lrgs, estimator, ref_lrg)
        predicted = np.array([drops[s] for s in lrgs])
        measured = (ref_miou - rows["miou"].to_numpy(dtype=np.float64)) / ref_miou
        gflops = rows["gflops"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pred_fpi = np.where(predicted < 1, gflops / (ref_miou * (1 - predicted)), np.inf)
        scored = rows.assign(predicted_fpi=pred_fpi)
        pick = int(
            scored.sort_values(["predicted_fpi", "lrg"], ascending=[True, False])["lrg"].iloc[0]
        )
        best = least_fpi(rows)
        fpi_of = dict(zip(lrgs, rows["fpi"].to_numpy(dtype=np.float64), strict=True))
        records.append(
            {
                "label": group.label,
                "model": group.key["model"],
                "dataset": dataset,
                "prune_rate": float(group.key["prune_rate"]),
                "reference_lrg": ref_lrg,
                "reference_miou": ref_miou,
                "n_lrgs": len(lrgs),
                "spearman": spearman(predicted, measured),
                "pick_lrg": pick,
                "optimal_lrg": int(best["lrg"]),
                "exact": is_exact(fpi_of[pick], float(best["fpi"])),
                "regret": fpi_of[pick] / float(best["fpi"]) - 1.0,
            }
        )
        for i, s in enumerate(lrgs):
            details.append(
                {
                    "label": group.label,
                    "dataset": dataset,
                    "lrg": s,
                    "nu_max": band_of_lrg(s),
                    "regressor": curve_at(label_curves[dataset], band_of_lrg(s)),
                    "predicted_drop": float(predicted[i]),
                    "measured_drop": float(measured[i]),
                    "gflops": float(gflops[i]),
                    "fpi": fpi_of[s],
                    "predicted_fpi": float(pred_fpi[i]),
                    "reference": s == ref_lrg,
                }
            )
    table = pd.DataFrame(records, columns=list(BACKTEST_COLUMNS))
    detail = pd.DataFrame(details)
    if table.empty:
        raise InputError("no truncation group with a reference run and a label curve to backtest")
    others = detail.loc[~detail["reference"]]
    summary = {
        "groups": len(table),
        "mean_spearman": float(table["spearman"].mean()),  # NaN groups left out
        "pooled_spearman": spearman(others["predicted_drop"], others["measured_drop"]),
        "exact_picks": int(table["exact"].sum()),
        "mean_regret": float(table["regret"].mean()),
        "max_regret": float(table["regret"].max()),
        "skipped": skipped,
    }
    return LabelsOnlyBacktest(groups=table, rows=detail, summary=summary)


__all__ = ["BACKTEST_COLUMNS", "LabelsOnlyBacktest", "labels_only_backtest", "spearman"]
