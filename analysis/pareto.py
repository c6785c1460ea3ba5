"""The Pareto front of GFLOPs against mIoU: the configurations no other one beats on both.

A configuration is on the front when no other has fewer (or as few) GFLOPs and a higher (or as
high) mIoU with at least one strictly better. mIoU is only comparable within a data set, so
:func:`pareto_front` takes the front per data set. ``sweep --multi-objective`` prints, logs and
plots it; ``analyze`` marks it in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.figure_style import header, line_handle, outside_legend, panel_grid, styled

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Columns of a front table, in order, where present.
FRONT_COLUMNS = (
    "dataset",
    "model",
    "lrg",
    "prune_rate",
    "annotation_nu_max",
    "gflops",
    "miou",
    "fpi",
    "run_name",
    "trial_id",
)


def front_mask(cost: Any, value: Any) -> np.ndarray:
    """Which points are non-dominated when ``cost`` is minimised and ``value`` maximised
    (exact ties with a front point stay on the front: both are optimal)."""
    c = np.asarray(cost, dtype=float)
    v = np.asarray(value, dtype=float)
    order = np.lexsort((-v, c))  # cheapest first; among equal cost, best value first
    mask = np.zeros(len(c), dtype=bool)
    best = -np.inf
    best_cost = np.nan
    for i in order:
        if v[i] > best or (v[i] == best and c[i] == best_cost):
            mask[i] = True
            if v[i] > best:
                best, best_cost = v[i], c[i]
    return mask


def pareto_front(
    rows: pd.DataFrame, cost: str = "gflops", value: str = "miou", by: str | None = "dataset"
) -> pd.DataFrame:
    """The rows on the front (per ``by`` group when given), sorted by group and cost."""
    import pandas as pd

    usable = rows.dropna(subset=[cost, value])
    if usable.empty:
        return usable.copy()
    parts = [usable] if by is None or by not in usable else [p for _, p in usable.groupby(by)]
    kept = [p.loc[front_mask(p[cost], p[value])] for p in parts]
    front = pd.concat(kept)
    keys = [by, cost] if by is not None and by in front else [cost]
    return front.sort_values(keys).reset_index(drop=True)


def front_table(front: pd.DataFrame) -> pd.DataFrame:
    """The front's columns a reader needs, in :data:`FRONT_COLUMNS` order."""
    return front[[c for c in FRONT_COLUMNS if c in front]]


@styled
def figure_pareto(rows: pd.DataFrame) -> Figure | None:
    """mIoU against GFLOPs, one panel per data set: every configuration, the front joined by
    its staircase and ringed."""
    usable = rows.dropna(subset=["gflops", "miou"])
    if len(usable) < 2:
        return None
    datasets = sorted(dict.fromkeys(str(d) for d in usable["dataset"]))
    fig, items = panel_grid(len(datasets))
    front = pareto_front(usable)
    for (ax,), dataset in zip(items, datasets, strict=True):
        part = usable.loc[usable["dataset"].astype(str) == dataset]
        best = front.loc[front["dataset"].astype(str) == dataset].sort_values("gflops")
        ax.plot(part["gflops"], part["miou"], ls="none", marker="o", ms=5, color="0.65")
        ax.step(best["gflops"], best["miou"], where="post", color="C3", lw=1.5)
        ax.plot(
            best["gflops"], best["miou"], ls="none", marker="o", ms=8, mfc="none", mec="C3", mew=1.5
        )
        ax.set(title=dataset, xlabel="GFLOPs", ylabel="mIoU")
    handles = [
        header("points"),
        line_handle("configuration", color="0.65", ls="none", marker="o"),
        line_handle("Pareto front", color="C3", marker="o", mfc="none", mec="C3"),
    ]
    outside_legend(fig, handles)
    return fig


def plot_pareto(rows: pd.DataFrame, path: str | Path) -> Path | None:
    """Write :func:`figure_pareto` as a PNG (None when there is nothing to draw)."""
    from analysis.spectra_plots import save

    return save(figure_pareto(rows), path)


__all__ = [
    "FRONT_COLUMNS",
    "figure_pareto",
    "front_mask",
    "front_table",
    "pareto_front",
    "plot_pareto",
]
