"""Runs (MLflow or CSV) -> DataFrames -> FPI, optimal LRG, the mIoU-drop estimator, plans for the
next sweep, plots and the report. No Ray.

Typical use::

    from analysis import analyze, load_runs_mlflow, plan_lrgs

    result = analyze(load_runs_mlflow("sqlite:///mlflow.db", "my-sweep"))
    result.optimal            # optimal LRG per (model, dataset, prune rate)
    result.estimator          # drop = slope * R_ce + intercept
"""

from __future__ import annotations

from analysis.drops import drop_table, fit_drops
from analysis.estimator import (
    DEFAULT_R_CE_MAX,
    PAPER_ESTIMATOR,
    Estimator,
    fit_estimator,
    fit_line,
    load_estimator,
)
from analysis.groups import Group, find_groups, fpi, group_keys, optimal_lrg, prepare_runs
from analysis.mlflow_trials import load_runs_mlflow
from analysis.plan import Plan, curve_at, plan_lrgs, plan_reference
from analysis.references import ReferenceRun, reference_from_run, references_from_experiment
from analysis.runs import AnalysisWarning, load_runs_csv
from analysis.spectra import points_curve, read_spectrum, spectrum_curve
from analysis.sweep import Analysis, analyze
from analysis.validation import leave_one_dataset_out
from trainables.grids import paper_lrgs as default_lrgs  # the paper's LRG sizes at an input

__all__ = [
    "DEFAULT_R_CE_MAX",
    "PAPER_ESTIMATOR",
    "Analysis",
    "AnalysisWarning",
    "Estimator",
    "Group",
    "Plan",
    "ReferenceRun",
    "analyze",
    "curve_at",
    "default_lrgs",
    "drop_table",
    "find_groups",
    "fit_drops",
    "fit_estimator",
    "fit_line",
    "fpi",
    "group_keys",
    "leave_one_dataset_out",
    "load_estimator",
    "load_runs_csv",
    "load_runs_mlflow",
    "optimal_lrg",
    "plan_lrgs",
    "plan_reference",
    "points_curve",
    "prepare_runs",
    "read_spectrum",
    "reference_from_run",
    "references_from_experiment",
    "spectrum_curve",
]
