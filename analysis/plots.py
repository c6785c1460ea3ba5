"""The report's figures (matplotlib, Agg backend), sized for a slide (``analysis.figure_style``).

Each ``figure_*`` function builds one :class:`~matplotlib.figure.Figure` (or returns None when
there is nothing to draw) so its fonts and legends can be checked; each ``plot_*`` function
writes that figure as a PNG and returns its path (or None). Groups are drawn the same way in
every figure: one panel per data set, one line style and marker per model, one colour per
variant (prune rate), one legend outside the panels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.estimator import PAPER_ESTIMATOR, Estimator
from analysis.figure_style import (
    Channels,
    freeze_layout,
    header,
    line_handle,
    outside_legend,
    panel_grid,
    place_labels,
    styled,
    variant_of,
)
from analysis.groups import ANNOTATION, TRUNCATION, by_keys, group_keys, least_fpi
from analysis.spectra_plots import (
    figure_spectra,
    figure_spectrum,
    figure_training_spectra,
    plot_spectra,
    plot_spectrum,
    plot_training_spectra,
    reference_curves,
    save,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


# --------------------------------------------------------------------- mIoU, FLOPs, FPI


def _truncation_parts(rows: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    return list(by_keys(pixel, group_keys(rows))) if not pixel.empty else []


@styled
def figure_miou_flops(rows: pd.DataFrame) -> Figure | None:
    """mIoU against GFLOPs, one panel per data set, one line per group (pixel-wise runs),
    points labelled with their LRG size where a label fits."""
    parts = _truncation_parts(rows)
    if not parts:
        return None
    channels = Channels([k["model"] for k, _ in parts], [variant_of(k) for k, _ in parts])
    datasets = sorted(dict.fromkeys(str(k["dataset"]) for k, _ in parts))
    fig, items = panel_grid(len(datasets))
    labels: dict[Any, list[tuple[int, float, float, str]]] = {}
    for (ax,), dataset in zip(items, datasets, strict=True):
        for key, part in parts:
            if str(key["dataset"]) != dataset:
                continue
            part = part.sort_values("gflops")
            variant = variant_of(key)
            ax.plot(part["gflops"], part["miou"], ms=4, **channels.line(key["model"], variant))
            rank = channels.variants.index(variant)
            for s, x, y in zip(part["lrg"], part["gflops"], part["miou"], strict=True):
                labels.setdefault(ax, []).append((rank, float(x), float(y), str(int(s))))
        ax.set(title=dataset, xlabel="GFLOPs", ylabel="mIoU")
    outside_legend(fig, [*channels.handles(), header("numbers: LRG size", colon=False)])
    renderer = freeze_layout(fig)
    for ax, points in labels.items():
        ordered = sorted(points, key=lambda p: p[0])  # unpruned lines first
        place_labels(ax, renderer, [(x, y, text) for _, x, y, text in ordered])
    return fig


def plot_miou_flops(rows: pd.DataFrame, path: str | Path) -> Path | None:
    """Write :func:`figure_miou_flops` as a PNG."""
    return save(figure_miou_flops(rows), path)


@styled
def figure_fpi(rows: pd.DataFrame, optimal: pd.DataFrame | None = None) -> Figure | None:
    """FPI against LRG size, one panel per data set, one line per group; the optimum of each
    group filled (paper Fig. 4)."""
    parts = _truncation_parts(rows)
    if not parts:
        return None
    channels = Channels([k["model"] for k, _ in parts], [variant_of(k) for k, _ in parts])
    datasets = sorted(dict.fromkeys(str(k["dataset"]) for k, _ in parts))
    fig, items = panel_grid(len(datasets))
    for (ax,), dataset in zip(items, datasets, strict=True):
        for key, part in parts:
            if str(key["dataset"]) != dataset:
                continue
            part = part.sort_values("lrg")
            style = channels.line(key["model"], variant_of(key))
            ax.plot(part["lrg"], part["fpi"], mfc="white", ms=5, **style)
            best = least_fpi(part)
            ax.plot(
                [best["lrg"]], [best["fpi"]], ls="none", ms=9, mec="black", mew=0.8,
                marker=style["marker"], color=style["color"],
            )  # fmt: skip
        ax.set(title=dataset, xlabel="LRG size", ylabel="FPI (GFLOPs / mIoU)")
        lrgs = sorted(
            {int(s) for key, part in parts if str(key["dataset"]) == dataset for s in part["lrg"]}
        )
        if len(lrgs) <= 9:
            ax.set_xticks(lrgs)
    handles = [
        *channels.handles(),
        header("points"),
        line_handle("measured", color="0.3", ls="none", marker="o", mfc="white"),
        line_handle("least FPI (optimal LRG)", color="0.3", ls="none", marker="o", ms=9, mec="black"),
    ]  # fmt: skip
    outside_legend(fig, handles)
    return fig


def plot_fpi(rows: pd.DataFrame, optimal: pd.DataFrame, path: str | Path) -> Path | None:
    """Write :func:`figure_fpi` as a PNG."""
    return save(figure_fpi(rows, optimal), path)


# --------------------------------------------------------------------- drops, budget


@styled
def figure_drops(
    drops: pd.DataFrame, estimator: Estimator | None, r_ce_max: float
) -> Figure | None:
    """Relative mIoU drop against R_ce: one panel per sweep kind present (truncation, annotation;
    paper Fig. 5a, 7) and a zoom on the fitted range with the fitted line (solid) and the
    paper's (dashed) (Fig. 5b). Hollow points lie outside the fitted range."""
    points = drops.loc[drops["r_ce"].notna()] if not drops.empty else drops
    if points.empty:
        return None
    kinds = [k for k in (TRUNCATION, ANNOTATION) if (points["kind"] == k).any()]
    fig, items = panel_grid(len(kinds) + 1)
    axes = [panels[0] for panels in items]
    datasets = sorted(str(d) for d in points["dataset"].unique())
    color_of = {d: f"C{i % 10}" for i, d in enumerate(datasets)}
    marker_of = {TRUNCATION: "o", ANNOTATION: "^"}
    xs = np.linspace(0.0, r_ce_max, 20)
    zoom = axes[-1]
    for ax, kind in zip(axes[:-1], kinds, strict=True):
        part = points.loc[points["kind"] == kind]
        for dataset in datasets:
            _scatter(ax, part.loc[part["dataset"] == dataset], color_of[dataset], marker_of[kind])
        ax.set_title(f"{kind} sweep")
    for kind in kinds:
        part = points.loc[(points["kind"] == kind) & (points["r_ce"] < 1.5 * r_ce_max)]
        for dataset in datasets:
            sub = part.loc[part["dataset"] == dataset]
            _scatter(zoom, sub, color_of[dataset], marker_of[kind])
    if estimator is not None:
        zoom.plot(xs, estimator.predict_drop(xs), "k-", lw=1.4)
    zoom.plot(xs, PAPER_ESTIMATOR.predict_drop(xs), "k--", lw=1.0)
    zoom.set_title(f"fitted range (R_ce < {r_ce_max:g})")
    for ax in axes:
        ax.axvline(r_ce_max, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="R_ce(nu_max) of the reference", ylabel="relative mIoU drop")
    handles = [header("data set")]
    handles += [line_handle(d, color=color_of[d], ls="none", marker="o") for d in datasets]
    handles.append(header("sweep"))
    handles += [line_handle(k, color="0.3", ls="none", marker=marker_of[k]) for k in kinds]
    handles += [
        line_handle("not fitted (hollow)", color="0.3", ls="none", marker="o", mfc="none"),
        header("lines"),
    ]
    if estimator is not None:
        handles.append(line_handle(f"fit: {_line(estimator)}", color="black", lw=1.4))
    handles += [
        line_handle(f"paper: {_line(PAPER_ESTIMATOR)}", color="black", ls="--", lw=1.0),
        line_handle(f"R_ce = {r_ce_max:g} (fit bound)", color="grey", ls=":", lw=0.8),
    ]
    outside_legend(fig, handles)
    return fig


def plot_drops(
    drops: pd.DataFrame, estimator: Estimator | None, r_ce_max: float, path: str | Path
) -> Path | None:
    """Write :func:`figure_drops` as a PNG."""
    return save(figure_drops(drops, estimator, r_ce_max), path)


@styled
def figure_budget_curve(curve: pd.DataFrame | None) -> Figure | None:
    """FPI regret against the budget of trainings per group: one thin line per group, the mean
    and the worst bold (``analysis.backtest.budget_curve``)."""
    part = curve.loc[curve["regret"].notna()] if curve is not None and not curve.empty else None
    if part is None or part.empty:
        return None
    fig, items = panel_grid(1)
    from matplotlib.ticker import FuncFormatter

    ax = items[0][0]
    fig.set_size_inches(6.0 + 2.2, 3.6)
    for _, group in part.groupby("group"):
        ax.plot(group["budget"], 100 * group["regret"], color="0.75", lw=0.8)
    stats = part.groupby("budget")["regret"].agg(["mean", "max"])
    ax.plot(stats.index, 100 * stats["max"], "o-", color="C3")
    ax.plot(stats.index, 100 * stats["mean"], "s-", color="C0")
    ax.set_xlabel("budget: trainings per group (the reference is 1)")
    ax.set_ylabel("FPI regret (%)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xticks(sorted(part["budget"].unique()))
    handles = [
        line_handle("worst group", color="C3", marker="o"),
        line_handle("mean over groups", color="C0", marker="s"),
        line_handle("one group", color="0.75", lw=0.8),
    ]
    outside_legend(fig, handles)
    return fig


def plot_budget_curve(curve: pd.DataFrame, path: str | Path) -> Path | None:
    """Write :func:`figure_budget_curve` as a PNG."""
    return save(figure_budget_curve(curve), path)


def _scatter(ax: Any, part: pd.DataFrame, color: str, marker: str) -> None:
    """Fitted points filled, the others hollow."""
    if part.empty:
        return
    fit, out = part.loc[part["in_fit"]], part.loc[~part["in_fit"]]
    ax.scatter(fit["r_ce"], fit["drop"], color=color, marker=marker, s=24)
    if not out.empty:
        ax.scatter(
            out["r_ce"], out["drop"], facecolors="none", edgecolors=color, marker=marker, s=24
        )


def _line(estimator: Estimator) -> str:
    sign = "-" if round(estimator.intercept, 4) < 0 else "+"
    return f"{estimator.slope:.3f} R_ce {sign} {abs(estimator.intercept):.4f}"


__all__ = [
    "figure_budget_curve",
    "figure_drops",
    "figure_fpi",
    "figure_miou_flops",
    "figure_spectra",
    "figure_spectrum",
    "figure_training_spectra",
    "plot_budget_curve",
    "plot_drops",
    "plot_fpi",
    "plot_miou_flops",
    "plot_spectra",
    "plot_spectrum",
    "plot_training_spectra",
    "reference_curves",
]
