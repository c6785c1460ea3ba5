"""Sentences of the report: under each figure, what it shows and how to read it; the verdict's
summary of each strategy."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from analysis.sweep import Analysis

#: Why R_ce can exceed 1, said once where the figure shows it.
R_CE_ABOVE_ONE = (
    "R_ce = |1 - truncated CE / CE| can exceed 1 at coarse bands: single band terms L_ce[k] can "
    "be negative, so the sum over the bands k <= nu_max can be negative or larger than the "
    "whole CE."
)
#: The short title of each figure (its alt text and the start of its caption).
FIGURE_TITLES = {
    "spectra.png": "Spectra and R_ce curves of the reference runs",
    "training_spectra.png": "CE band profiles at initialisation and after training",
    "miou_flops.png": "mIoU against GFLOPs",
    "fpi.png": "FLOPs per IoU against the LRG size",
    "budget_curve.png": "Backtest: FPI regret against trainings per group",
    "drops.png": "Relative mIoU drop against R_ce",
    "pareto.png": "Pareto front of GFLOPs against mIoU",
}
_CHANNELS = "One panel per data set; line style and marker: model; colour: prune rate."


def figure_captions(analysis: Analysis, with_spectra: bool) -> dict[str, str]:
    """Caption of each figure file name (``analysis.plots`` writes them)."""
    bound = f"{analysis.r_ce_max:g}"
    top = (
        "Top: the normalised label spectrum |b[k]| (black) and each reference run's prediction "
        "spectrum |yhat[k]| against the band k; the faster they fall, the less a coarse grid "
        "loses. Bottom: "
        if with_spectra
        else ""
    )
    return {
        "spectra.png": (
            f"{_CHANNELS} {top}R_ce(nu_max) of each reference run, the relative CE lost when "
            "only the bands k <= nu_max are kept (paper Fig. 1). How to read: find the band "
            f"where the curve falls below the fit's range (R_ce < {bound}); an LRG of size "
            f"2 nu_max + 1 keeps the bands up to nu_max. {R_CE_ABOVE_ONE} The dotted line "
            "marks R_ce = 1; R_ce is 0 at the image's own band, which a log axis cannot show."
        ),
        "training_spectra.png": (
            "CE band profile L_ce[k] of each reference run at initialisation (dashed) and after "
            "training (solid), as in the paper's Fig. 1 (fourth row), one panel per model and "
            "data set, colour: prune rate; the log y-axis shows the absolute value |L_ce[k]|, "
            "since L_ce[k] is negative at some bands (marked by crosses). How to read: the "
            "higher the solid curve at a band, the more of the trained network's CE lies "
            "there; the crosses are the negative terms that let R_ce exceed 1 at coarse bands."
        ),
        "miou_flops.png": (
            f"mIoU against GFLOPs of the pixel-wise runs, one line per group. {_CHANNELS} "
            "Numbers are LRG sizes (a number is left out where it would cover another, a point "
            "or a line). How to read: each line runs from its smallest LRG (left) to the "
            "native grid (right); where a line is flat, the larger grids cost FLOPs and buy "
            "little mIoU."
        ),
        "fpi.png": (
            f"FPI = GFLOPs / mIoU against the LRG size, one line per group. {_CHANNELS} The "
            "large marker with a black edge is each group's least FPI, its optimal LRG (the "
            "table above). How to read: lower is better; a minimum left of the native grid "
            "means truncating the decoder pays, a flat bottom means several LRGs are nearly "
            "as good."
        ),
        "budget_curve.png": (
            "The adaptive strategy replayed on this sweep with a budget of 1, 2, ... trainings "
            f"per group ({analysis.budget_source}): FPI regret of its pick against the group's "
            "measured optimum; grey lines are single groups. Budget 1 is the reference alone. "
            "How to read: where the red line (worst group) reaches 0, the strategy matches the "
            "exhaustive sweep's pick in every group with that many trainings per group."
        ),
        "pareto.png": (
            "mIoU against GFLOPs of every configuration (grey), one panel per data set; the red "
            "staircase joins the Pareto front, the configurations no other one beats on both "
            "(fewer GFLOPs and higher mIoU), ringed and listed in the table below. How to "
            "read: pick along the red line; a grey point below it costs FLOPs for nothing. "
            "`sweep --search optuna --multi-objective` samples toward this front."
        ),
        "drops.png": (
            "Relative mIoU drop against R_ce of the reference run at the configuration's band "
            "(left: truncation sweep, middle: annotation sweep when present, right: the fitted "
            "range with the fitted line, solid, and the paper's, dashed); colour: data set, "
            "hollow points lie outside the fitted range "
            f"(R_ce >= {bound}) and are not fitted. How to read: points close to the line "
            "mean one reference run's R_ce predicts the drop; the slope turns an R_ce "
            f"tolerance into an mIoU-drop tolerance. {R_CE_ABOVE_ONE}"
        ),
    }


def verdict_summary(verdict: pd.DataFrame) -> str:
    """One sentence: exact picks and FPI regret of the paper (estimate) strategy and, when the
    table has its columns, of the adaptive strategy with its trainings."""
    sentences = []
    if {"exact", "regret"} <= set(verdict.columns):
        sentences.append(
            f"paper (estimate) strategy: {_picks(verdict['exact'], verdict['regret'])}"
        )
    if {"adaptive_lrg", "optimal_lrg", "adaptive_regret"} <= set(verdict.columns):
        exact = verdict["adaptive_lrg"] == verdict["optimal_lrg"]
        text = f"adaptive strategy: {_picks(exact, verdict['adaptive_regret'])}"
        if "adaptive_trainings" in verdict:
            text += f", {int(verdict['adaptive_trainings'].sum())} trainings"
        sentences.append(text)
    summary = "; ".join(sentences) or f"{len(verdict)} group(s)"
    return (
        "Each strategy's LRG pick per group against the exhaustive sweep's optimum (regret: "
        f"FPI of the pick over the optimal FPI, minus 1). {summary}."
    )


def _picks(exact: pd.Series, regret: pd.Series) -> str:
    regret = regret.astype(float).dropna()
    text = f"exact picks {int(exact.astype(bool).sum())}/{len(exact)}"
    if len(regret):
        text += f", mean FPI regret {regret.mean():.1%}, worst {regret.max():.1%}"
    return text
