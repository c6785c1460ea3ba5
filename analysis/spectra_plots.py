"""The report's spectral figures (``analysis.plots`` re-exports them): each reference run's
R_ce curve with the label and prediction spectra, the CE band profile at initialisation and after
training, and one run's ``spectrum.png``. Built by ``figure_*`` (checkable Figure objects),
written by ``plot_*``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.figure_style import (
    DPI,
    Channels,
    header,
    line_handle,
    outside_legend,
    panel_grid,
    pyplot,
    styled,
    variant_of,
)
from trainables.run_schema import INIT_PROFILE_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from analysis.groups import Group

#: Curves with at most this many points get markers (sparse R_ce points of a runs CSV).
_SPARSE = 16


def save(fig: Figure | None, path: str | Path) -> Path | None:
    """Write ``fig`` as a PNG (closing it); None when there is no figure."""
    if fig is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


# --------------------------------------------------------------------- reference curves


@dataclass
class Curve:
    """One reference run's R_ce curve (and spectrum), shared by the groups that use it."""

    model: str
    dataset: str
    variants: list[str]
    curve: dict[int, float]
    spectrum: pd.DataFrame | None = None
    groups: list[str] = field(default_factory=list)

    @property
    def variant(self) -> str:
        return _join_variants(self.variants)


def reference_curves(groups: list[Group]) -> list[Curve]:
    """One entry per distinct reference curve: the groups of one (model, dataset) whose curves
    agree wherever both have a band (an annotation group and its pixel-wise truncation group,
    prune rates that share one given curve) are drawn as one line."""
    curves: list[Curve] = []
    for group in groups:
        ref = group.reference
        if ref is None or not group.curve:
            continue
        key = {k: v for k, v in group.key.items() if k != "lrg"}
        model, dataset = str(ref["model"]), str(ref["dataset"])
        for known in curves:
            if (known.model, known.dataset) == (model, dataset) and _agree(known, group):
                known.curve = {**group.curve, **known.curve}
                if known.spectrum is None:
                    known.spectrum = group.spectrum
                if variant_of(key) not in known.variants:
                    known.variants.append(variant_of(key))
                known.groups.append(group.label)
                break
        else:
            curves.append(
                Curve(model, dataset, [variant_of(key)], dict(group.curve), group.spectrum)
            )
            curves[-1].groups.append(group.label)
    return curves


def _agree(known: Curve, group: Group) -> bool:
    """Both curves have a band in common and the same R_ce at every such band."""
    common = sorted(set(known.curve) & set(group.curve))
    if not common:
        return False
    a = np.array([known.curve[k] for k in common])
    b = np.array([group.curve[k] for k in common])
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-12))


def _join_variants(variants: list[str]) -> str:
    """``prune 0`` + ``prune 0.2`` -> ``prune 0, 0.2``."""
    heads = {v.split(" ", 1)[0] for v in variants}
    if len(variants) > 1 and len(heads) == 1 and all(" / " not in v for v in variants):
        (head,) = heads
        values = [v.split(" ", 1)[1] for v in variants]
        return f"{head} {', '.join(sorted(values, key=float_or_text))}"
    return "; ".join(variants)


def float_or_text(text: str) -> tuple[int, Any]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def _positive(values: Any) -> np.ndarray:
    """Values for a log axis: zeros and NaN become gaps (R_ce is 0 at the image's band)."""
    out = np.asarray(values, dtype=float).copy()
    out[~(out > 0)] = np.nan
    return out


def _datasets(curves: list[Curve]) -> list[str]:
    return sorted(dict.fromkeys(c.dataset for c in curves))


# --------------------------------------------------------------------- spectra


@styled
def figure_spectra(groups: list[Group]) -> Figure | None:
    """Per data set: the label spectrum |b[k]| and each reference's prediction spectrum
    |yhat[k]| (normalised, from spectrum.csv; only when some reference has one), and each
    reference's R_ce(nu_max) curve (paper Fig. 1)."""
    curves = reference_curves(groups)
    if not curves:
        return None
    with_spectra = any(c.spectrum is not None for c in curves)
    datasets = _datasets(curves)
    channels = Channels([c.model for c in curves], [c.variant for c in curves])
    fig, items = panel_grid(len(datasets), rows_per_item=2 if with_spectra else 1)
    for panels, dataset in zip(items, datasets, strict=True):
        mine = [c for c in curves if c.dataset == dataset]
        rce = panels[-1]
        for c in mine:
            bands = sorted(c.curve)
            style = channels.line(c.model, c.variant)
            if len(bands) > _SPARSE:
                style["marker"] = None
            rce.plot(bands, _positive([c.curve[k] for k in bands]), **style)
        rce.axhline(1.0, color="0.5", lw=0.8, ls=":")
        rce.set(xlabel="band limit nu_max", ylabel="R_ce(nu_max)", yscale="log")
        if with_spectra:
            _spectra_panel(panels[0], mine, channels)
            panels[0].set_title(dataset)
        else:
            rce.set_title(dataset)
    handles = channels.handles(markers=not with_spectra)
    if with_spectra:
        handles += [
            header("spectra (top)"),
            line_handle("labels |b[k]|", color="black", lw=2.2),
            header("predictions |yhat[k]|: as above", colon=False),
        ]
    handles.append(line_handle("R_ce = 1", color="0.5", lw=0.8, ls=":"))
    outside_legend(fig, handles)
    return fig


def _spectra_panel(ax: Any, curves: list[Curve], channels: Channels) -> None:
    drawn: list[np.ndarray] = []
    for c in curves:
        spectrum = c.spectrum
        if spectrum is None:
            continue
        k = spectrum["k"].to_numpy(float)
        if "label_magnitude_norm" in spectrum:
            labels = spectrum["label_magnitude_norm"].to_numpy(float)
            if not any(len(d) == len(labels) and np.allclose(d, labels) for d in drawn):
                drawn.append(labels)
                ax.plot(k, _positive(labels), color="black", lw=2.2)
        if "pred_magnitude_norm" in spectrum:
            style = {**channels.line(c.model, c.variant), "marker": None}
            ax.plot(k, _positive(spectrum["pred_magnitude_norm"]), lw=1.3, **style)
    ax.set(xlabel="band k", ylabel="normalised magnitude", yscale="log")


def plot_spectra(groups: list[Group], path: str | Path) -> Path | None:
    """Write :func:`figure_spectra` as a PNG."""
    return save(figure_spectra(groups), path)


@styled
def figure_training_spectra(groups: list[Group]) -> Figure | None:
    """Initial (dashed) and final (solid) CE band profiles of every reference run (paper Fig. 1,
    fourth row), one panel per (model, data set). L_ce[k] can be negative at some bands, so
    the log axis shows |L_ce[k]| and crosses mark the negative bands. None when no reference's
    spectrum has the init column."""
    curves = [
        c
        for c in reference_curves(groups)
        if c.spectrum is not None
        and INIT_PROFILE_COLUMN in c.spectrum
        and "band_profile" in c.spectrum
        and c.spectrum[INIT_PROFILE_COLUMN].notna().any()
    ]
    if not curves:
        return None
    datasets = _datasets(curves)
    models = sorted(dict.fromkeys(c.model for c in curves))
    channels = Channels(models, [c.variant for c in curves])
    fig, items = panel_grid(len(datasets), rows_per_item=len(models))
    for panels, dataset in zip(items, datasets, strict=True):
        for ax, model in zip(panels, models, strict=True):
            for c in curves:
                if (c.dataset, c.model) != (dataset, model) or c.spectrum is None:
                    continue
                color = channels.color(c.variant)
                k = c.spectrum["k"].to_numpy(float)
                for column, style in (("band_profile", "-"), (INIT_PROFILE_COLUMN, "--")):
                    values = c.spectrum[column].to_numpy(float)
                    magnitude = _positive(np.abs(values))
                    ax.plot(k, magnitude, style, color=color, lw=1.3)
                    negative = values < 0
                    if negative.any():
                        ax.plot(k[negative], magnitude[negative], "x", color=color, ms=5)
            ax.set(title=f"{model} / {dataset}", xlabel="band k", ylabel="|L_ce[k]|")
            ax.set_yscale("log")
    handles = [
        header("stage"),
        line_handle("after training", color="0.3"),
        line_handle("at initialisation", color="0.3", ls="--"),
        line_handle("band with L_ce[k] < 0", color="0.3", ls="none", marker="x"),
        *channels.variant_handles(),  # models have panels of their own
    ]
    outside_legend(fig, handles)
    return fig


def plot_training_spectra(groups: list[Group], path: str | Path) -> Path | None:
    """Write :func:`figure_training_spectra` as a PNG."""
    return save(figure_training_spectra(groups), path)


# --------------------------------------------------------------------- one run


@styled
def figure_spectrum(frame: pd.DataFrame) -> Figure:
    """One run's R_ce(nu_max) over the band k, and the normalised |b[k]| and |yhat[k]|."""
    fig, items = panel_grid(2, max_columns=2)
    (left,), (right,) = items
    k = frame["k"]
    left.plot(k, frame["r_ce"], marker=".", color="tab:red")
    left.set(xlabel="band limit nu_max (k)", ylabel="R_ce(nu_max)")
    left.set_title("relative CE lost by truncation")
    handles = []
    for column, label, color in (
        ("label_magnitude_norm", "|b[k]| (labels)", "black"),
        ("pred_magnitude_norm", "|yhat[k]| (prediction)", "C0"),
    ):
        if column in frame:
            right.plot(k, _positive(frame[column]), color=color)
            handles.append(line_handle(label, color=color))
    right.set(xlabel="band k", ylabel="normalised magnitude", yscale="log")
    right.set_title("spectra (Fig. 1)")
    if handles:
        outside_legend(fig, handles)
    return fig


def plot_spectrum(frame: pd.DataFrame, path: str | Path) -> Path:
    """One run's ``spectrum.png`` (its ``spectrum.csv`` frame; logged beside it by
    ``orchestrator.store``)."""
    saved = save(figure_spectrum(frame), path)
    assert saved is not None
    return saved
