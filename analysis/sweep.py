"""``analyze``: a sweep's runs -> prepared rows, groups, drops, optimal LRGs, the estimator fit and
its validation, in one pipeline.

Each step is its own module: ``analysis.groups`` (repeats averaged, groups, references, curves,
the optimum), ``analysis.drops`` (relative drops and the fit), ``analysis.validation``
(leave-one-dataset-out). Definitions: ``/work/shared/DESIGN.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analysis.drops import drop_table, fit_drops
from analysis.estimator import DEFAULT_R_CE_MAX, Estimator
from analysis.groups import Group, find_groups, optimal_lrg, prepare_runs
from analysis.runs import AnalysisWarning, warn
from analysis.spectra import reference_spectrum
from analysis.validation import leave_one_dataset_out
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Analysis:
    """Everything ``spectral-sweep analyze`` reports."""

    rows: pd.DataFrame  # prepared runs (repeats averaged)
    groups: list[Group]
    drops: pd.DataFrame  # relative drops and regressors of every group with a reference
    optimal: pd.DataFrame  # optimal LRG per truncation group
    estimator: Estimator | None  # None when too few points to fit a line
    lodo: pd.DataFrame  # leave-one-dataset-out validation
    r_ce_max: float
    notes: list[str] = field(default_factory=list)  # warnings raised while analysing
    # the adaptive strategy replayed on this sweep at budgets 1..n (analysis.backtest), per
    # group; empty when no group is complete
    budget: pd.DataFrame | None = None
    budget_source: str = ""  # which estimator the replay used


def analyze(
    runs: pd.DataFrame,
    r_ce_max: float = DEFAULT_R_CE_MAX,
    load_spectra: bool = True,
    source: str = "",
) -> Analysis:
    """Prepare runs, find groups and references, compute drops, the optimum, fit, validate.

    Warnings (groups without a reference, runs without R_ce, a fit that cannot be made) are
    issued as :class:`AnalysisWarning` and kept in ``notes``.
    """
    if not r_ce_max > 0:
        raise InputError(f"--r-ce-max {r_ce_max} must be > 0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        rows = prepare_runs(runs)
        groups = find_groups(rows, reference_spectrum if load_spectra else None)
        drops = drop_table(groups, r_ce_max)
        optimal = optimal_lrg(rows)
        estimator: Estimator | None
        try:
            estimator = fit_drops(drops, r_ce_max, source)
        except InputError as err:
            warn(f"no estimator fitted: {err}")
            estimator = None
        lodo = leave_one_dataset_out(groups, drops, r_ce_max)
        budget, budget_source = _budget(groups, drops, r_ce_max)
    notes = [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    return Analysis(
        rows, groups, drops, optimal, estimator, lodo, r_ce_max, notes, budget, budget_source
    )


def _budget(
    groups: list[Group], drops: pd.DataFrame, r_ce_max: float
) -> tuple[pd.DataFrame | None, str]:
    """The adaptive strategy's budget curve on this sweep: leaving each data set out when there
    are two or more, else with the paper's estimator (a sweep's own fit would be hindsight)."""
    from analysis.backtest import Sweep
    from analysis.budget import budget_curve
    from analysis.estimator import PAPER_ESTIMATOR

    try:
        sweep = Sweep.from_groups(groups, drops)
        lodo = len({c.dataset for c in sweep.cases}) > 1
        curve = budget_curve(sweep, PAPER_ESTIMATOR, lodo=lodo, r_ce_max=r_ce_max)
    except InputError as err:
        warn(f"no budget curve: {err}")
        return None, ""
    source = "leave-one-data-set-out fits" if lodo else "the paper's estimator"
    return curve, source


def fit_experiments(
    tracking_uri: str, experiments: list[str], r_ce_max: float = DEFAULT_R_CE_MAX
) -> Estimator:
    """The estimator fitted on every finished trained run of ``experiments`` (each must exist
    and hold some): every sweep teaches the next (``--estimator-from E1,E2``)."""
    import pandas as pd

    from analysis.mlflow_trials import load_runs_mlflow

    if not experiments:
        raise InputError("--estimator-from names no experiment")
    frames = []
    for name in experiments:
        runs = load_runs_mlflow(tracking_uri, name)
        runs["run_id"] = name + ":" + runs["run_id"].astype(str)
        frames.append(runs)
    source = f"MLflow experiment(s) {', '.join(experiments)} at {tracking_uri}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        result = analyze(pd.concat(frames, ignore_index=True), r_ce_max, source=source)
    if result.estimator is None:
        why = next((n for n in result.notes if n.startswith("no estimator")), "no fit")
        raise InputError(f"--estimator-from {','.join(experiments)}: {why}")
    return result.estimator


__all__ = ["Analysis", "analyze", "fit_experiments"]
