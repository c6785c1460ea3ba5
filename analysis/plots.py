"""The report's figures (matplotlib, Agg backend): each function writes one PNG or returns None
when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.estimator import PAPER_ESTIMATOR, Estimator
from analysis.groups import ANNOTATION, TRUNCATION, by_keys, group_keys, least_fpi
from trainables.run_schema import INIT_PROFILE_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from analysis.groups import Group

_DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    _pyplot().close(fig)
    return path


def plot_spectra(groups: list[Group], path: str | Path) -> Path | None:
    """Label and prediction spectra |b[k]|, |yhat[k]| (normalised, from spectrum.csv) and the
    R_ce(nu_max) curve of every reference run (paper Fig. 1); the spectra panel only when some
    reference's spectrum.csv was read."""
    curves = _distinct_curves(groups)
    if not curves:
        return None
    plt = _pyplot()
    with_spectra = any(spectrum is not None for _, spectrum, _ in curves)
    fig, axes = plt.subplots(
        1, 2 if with_spectra else 1, figsize=(10 if with_spectra else 5.5, 3.8),
        constrained_layout=True, squeeze=False,
    )  # fmt: skip
    rce = axes[0][-1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, spectrum, curve) in enumerate(curves):
        color = colors[i % len(colors)]
        bands = sorted(curve)
        values = np.clip([curve[k] for k in bands], 1e-9, None)
        rce.plot(bands, values, color=color, label=label, marker="." if spectrum is None else "")
        if spectrum is None:
            continue
        k = spectrum["k"].to_numpy()
        for column, style, what in (
            ("label_magnitude_norm", "-", "labels |b[k]|"),
            ("pred_magnitude_norm", "--", "prediction |yhat[k]|"),
        ):
            if column in spectrum:
                mags = np.clip(spectrum[column].to_numpy(float), 1e-12, None)
                axes[0][0].plot(k, mags, style, color=color, label=f"{label}: {what}", lw=1.2)
    if with_spectra:
        mag = axes[0][0]
        mag.set(xlabel="band k", ylabel="normalised magnitude", yscale="log", title="spectra")
        mag.grid(alpha=0.3)
        mag.legend(fontsize=6)
    rce.set(xlabel="band limit nu_max", ylabel="R_ce(nu_max)", yscale="log", title="R_ce curves")
    rce.grid(alpha=0.3)
    if len(curves) > 6:
        rce.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        rce.legend(fontsize=6)
    return _save(fig, path)


def plot_training_spectra(groups: list[Group], path: str | Path) -> Path | None:
    """Initial (dashed) and final (solid) CE band profiles of every reference run (paper Fig. 1,
    fourth row). L_ce[k] can be negative at some bands, so the log axis shows |L_ce[k]| and
    crosses mark the negative bands. None when no reference's spectrum has the init column."""
    curves = [
        (label, spectrum)
        for label, spectrum, _ in _distinct_curves(groups)
        if spectrum is not None
        and INIT_PROFILE_COLUMN in spectrum
        and "band_profile" in spectrum
        and spectrum[INIT_PROFILE_COLUMN].notna().any()
    ]
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.0), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, spectrum) in enumerate(curves):
        color = colors[i % len(colors)]
        k = spectrum["k"].to_numpy(float)
        for column, style, stage in (
            ("band_profile", "-", "final"),
            (INIT_PROFILE_COLUMN, "--", "init"),
        ):
            values = spectrum[column].to_numpy(float)
            magnitude = np.abs(values)
            magnitude[~(magnitude > 0)] = np.nan  # zeros and NaN: gaps on the log axis
            ax.plot(k, magnitude, style, color=color, lw=1.3, label=f"{label}: {stage}")
            negative = values < 0
            if negative.any():
                ax.plot(k[negative], magnitude[negative], "x", color=color, ms=4)
    ax.plot([], [], "x", color="grey", label="band with L_ce[k] < 0")
    ax.set_yscale("log")
    ax.set_xlabel("band k", fontsize=10)
    ax.set_ylabel("|L_ce[k]|", fontsize=10)
    ax.set_title("CE band profile at initialisation and after training", fontsize=11)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return _save(fig, path)


def _distinct_curves(
    groups: list[Group],
) -> list[tuple[str, pd.DataFrame | None, dict[int, float]]]:
    """One entry per distinct reference curve; groups sharing one curve share one label."""
    labels: dict[tuple[tuple[int, float], ...], list[str]] = {}
    found: dict[tuple[tuple[int, float], ...], tuple[pd.DataFrame | None, dict[int, float]]] = {}
    for group in groups:
        ref = group.reference
        if ref is None or not group.curve:
            continue
        key = tuple(sorted(group.curve.items()))
        label = f"{ref['model']} / {ref['dataset']} / prune {float(ref['prune_rate']):g}"
        if label not in labels.setdefault(key, []):
            labels[key].append(label)
        found.setdefault(key, (group.spectrum, group.curve))
    out = []
    for key, names in labels.items():
        label = names[0] + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")
        out.append((label, *found[key]))
    return out


def plot_miou_flops(rows: pd.DataFrame, path: str | Path) -> Path | None:
    """mIoU against GFLOPs, one line per (model, dataset, prune rate) group, pixel-wise runs."""
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    if pixel.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    for key, part in by_keys(pixel, group_keys(rows)):
        part = part.sort_values("gflops")
        label = _key_label(key)
        ax.plot(part["gflops"], part["miou"], marker="o", ms=4, label=label)
        for s, x, y in zip(part["lrg"], part["gflops"], part["miou"], strict=True):
            ax.annotate(str(int(s)), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set(xlabel="GFLOPs", ylabel="mIoU", title="mIoU vs GFLOPs (labels: LRG size)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_fpi(rows: pd.DataFrame, optimal: pd.DataFrame, path: str | Path) -> Path | None:
    """FPI against LRG size per group, the optimum as a filled circle (paper Fig. 4)."""
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    if pixel.empty:
        return None
    datasets = sorted(str(d) for d in pixel["dataset"].unique())
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(4.2 * len(datasets), 3.8), constrained_layout=True, squeeze=False
    )
    keys = group_keys(rows)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for key, part in by_keys(pixel.loc[pixel["dataset"] == dataset], keys):
            part = part.sort_values("lrg")
            label = _key_label(key, skip=("dataset",))
            (line,) = ax.plot(part["lrg"], part["fpi"], marker="o", mfc="none", ms=5, label=label)
            best = least_fpi(part)
            ax.plot([best["lrg"]], [best["fpi"]], "o", color=line.get_color(), ms=8)
        ax.set(xlabel="LRG size", ylabel="FPI (GFLOPs / mIoU)", title=f"FPI: {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_drops(
    drops: pd.DataFrame, estimator: Estimator | None, r_ce_max: float, path: str | Path
) -> Path | None:
    """Relative mIoU drop against R_ce: one panel per sweep kind present (truncation, annotation;
    paper Fig. 5a, 7) and a zoom on the fitted range with the fitted line (solid) and the
    paper's (dashed) (Fig. 5b). Hollow points lie outside the fitted range."""
    points = drops.loc[drops["r_ce"].notna()] if not drops.empty else drops
    if points.empty:
        return None
    kinds = [k for k in (TRUNCATION, ANNOTATION) if (points["kind"] == k).any()]
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(kinds) + 1, figsize=(4.6 * (len(kinds) + 1), 3.9), constrained_layout=True
    )
    datasets = sorted(str(d) for d in points["dataset"].unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {d: colors[i % len(colors)] for i, d in enumerate(datasets)}
    marker_of = {TRUNCATION: "o", ANNOTATION: "^"}
    xs = np.linspace(0.0, r_ce_max, 20)
    zoom = axes[-1]
    for ax, kind in zip(axes[:-1], kinds, strict=True):
        part = points.loc[points["kind"] == kind]
        for dataset in datasets:
            sub = part.loc[part["dataset"] == dataset]
            _scatter(ax, sub, color_of[dataset], marker_of[kind], dataset)
        ax.axvline(r_ce_max, color="grey", lw=0.6, ls=":")
        ax.set(xlabel="R_ce(nu_max) of the reference", ylabel="relative mIoU drop")
        ax.set_title(f"{kind} sweep")
    for kind in kinds:
        part = points.loc[(points["kind"] == kind) & (points["r_ce"] < 1.5 * r_ce_max)]
        for dataset in datasets:
            sub = part.loc[part["dataset"] == dataset]
            _scatter(zoom, sub, color_of[dataset], marker_of[kind], f"{dataset} ({kind})")
    if estimator is not None:
        zoom.plot(xs, estimator.predict_drop(xs), "k-", lw=1.2, label=f"fit: {_line(estimator)}")
    zoom.plot(xs, PAPER_ESTIMATOR.predict_drop(xs), "k--", lw=0.8, label="paper fit")
    zoom.axvline(r_ce_max, color="grey", lw=0.6, ls=":")
    zoom.set(xlabel="R_ce(nu_max) of the reference", ylabel="relative mIoU drop")
    zoom.set_title(f"fitted range (R_ce < {r_ce_max:g})")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_budget_curve(curve: pd.DataFrame, path: str | Path) -> Path | None:
    """FPI regret against the budget of trainings per group: one thin line per group, the mean
    and the worst bold (``analysis.backtest.budget_curve``)."""
    part = curve.loc[curve["regret"].notna()] if curve is not None and not curve.empty else None
    if part is None or part.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for _, group in part.groupby("group"):
        ax.plot(group["budget"], 100 * group["regret"], color="0.75", lw=0.8)
    stats = part.groupby("budget")["regret"].agg(["mean", "max"])
    ax.plot(stats.index, 100 * stats["max"], "o-", color="C3", label="worst group")
    ax.plot(stats.index, 100 * stats["mean"], "s-", color="C0", label="mean over groups")
    ax.set_xlabel("budget: trainings per group (the reference is 1)", fontsize=10)
    ax.set_ylabel("FPI regret (%)", fontsize=10)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(sorted(part["budget"].unique()))
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper right")
    return _save(fig, path)


def _scatter(ax: Any, part: pd.DataFrame, color: str, marker: str, label: str) -> None:
    """Fitted points filled, the others hollow."""
    if part.empty:
        return
    fit, out = part.loc[part["in_fit"]], part.loc[~part["in_fit"]]
    ax.scatter(fit["r_ce"], fit["drop"], color=color, marker=marker, s=18, label=label)
    if not out.empty:
        ax.scatter(
            out["r_ce"], out["drop"], facecolors="none", edgecolors=color, marker=marker, s=18
        )


def _line(estimator: Estimator) -> str:
    sign = "-" if round(estimator.intercept, 4) < 0 else "+"
    return f"{estimator.slope:.3f} R_ce {sign} {abs(estimator.intercept):.4f}"


def _key_label(key: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """``deeplabv3plus / voc / prune 0.2 / backbone resnet18`` without the ``skip`` keys."""
    parts = []
    for name, value in key.items():
        if name in skip:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(text if name in ("model", "dataset") else f"{name.split('_')[0]} {text}")
    return " / ".join(parts)


def plot_spectrum(frame: pd.DataFrame, path: str | Path) -> Path:
    """One run's ``spectrum.png``: R_ce(nu_max) over the band k, and the normalised |b[k]| and
    |yhat[k]| (its ``spectrum.csv`` frame; logged beside it by ``orchestrator.store``)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    k = frame["k"]
    left.plot(k, frame["r_ce"], marker=".", color="tab:red")
    left.set_xlabel("band limit nu_max (k)")
    left.set_ylabel("R_ce(nu_max)")
    left.set_title("relative CE lost by truncation")
    left.grid(alpha=0.3)
    for column, label in (
        ("label_magnitude_norm", "|b[k]| (labels)"),
        ("pred_magnitude_norm", "|yhat[k]| (prediction)"),
    ):
        if column in frame:
            right.plot(k, frame[column], label=label)
    right.set_xlabel("band k")
    right.set_ylabel("normalised magnitude")
    right.set_yscale("log")
    right.set_title("spectra (Fig. 1)")
    right.legend()
    right.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
