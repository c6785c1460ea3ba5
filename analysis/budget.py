"""The budget curve: a strategy replayed (``analysis.backtest``) with a budget of 1, 2, ... n
trainings per group, the regret of its pick at each; how many trainings a sweep must spend
before the strategy's picks can be trusted."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from analysis.backtest import Sweep, backtest
from analysis.estimator import DEFAULT_R_CE_MAX, LINEAR, Estimator
from analysis.strategies import TRUNCATION, StrategyOptions

if TYPE_CHECKING:
    import pandas as pd


def budget_curve(
    sweep: Sweep,
    estimator: Estimator,
    options: StrategyOptions | None = None,
    lodo: bool = False,
    r_ce_max: float = DEFAULT_R_CE_MAX,
    form: str = LINEAR,
    strategy: str = "adaptive",
) -> pd.DataFrame:
    """Regret against trainings: ``strategy`` replayed with a budget of 1..n trainings per group
    (n: the largest group). One row per (budget, group): ``budget, group, kind, trainings,
    regret, exact``."""
    import pandas as pd

    options = options or StrategyOptions()
    largest = max(c.problem.size for c in sweep.cases)
    if options.max_drop is None:
        largest = max(c.problem.size for c in sweep.cases if c.problem.kind == TRUNCATION)
    records = []
    for budget in range(1, largest + 1):
        limited = dataclasses.replace(options, budget=budget)
        result = backtest(sweep, strategy, estimator, limited, lodo, r_ce_max, form)
        for g in result.per_group:
            records.append({"budget": budget, **{k: g[k] for k in BUDGET_FIELDS}})
    return pd.DataFrame(records, columns=["budget", *BUDGET_FIELDS])


BUDGET_FIELDS: tuple[str, ...] = ("group", "kind", "trainings", "regret", "exact")


def budget_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Per budget: mean and worst regret, exact picks and trainings over the groups."""
    if curve.empty:
        return curve
    grouped = curve.groupby("budget")
    out = grouped.agg(
        mean_regret=("regret", "mean"),
        max_regret=("regret", "max"),
        exact=("exact", "sum"),
        groups=("group", "count"),
        trainings=("trainings", "sum"),
    )
    return out.reset_index()


__all__ = ["BUDGET_FIELDS", "budget_curve", "budget_summary"]
