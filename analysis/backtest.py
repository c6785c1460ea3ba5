"""Backtests: replay a strategy on a finished exhaustive sweep before trusting it live.

The sweep's runs are prepared and grouped as ``analyze`` does (``analysis.groups``,
``analysis.drops``: each configuration's regressor is the reference's R_ce at its band). Each
complete group becomes a :class:`~analysis.strategies.GroupProblem`; the strategy's planner
(``analysis.strategies``) then runs its phases, and every training it asks for is answered by
looking the configuration's measured mIoU up in the table: it sees nothing it did not train.

- ``--lodo``: for each data set, the estimator is fitted on the other data sets' runs only, and
  the strategy is replayed on the held-out one's groups.
- Regret of a truncation group = FPI(pick) / FPI(optimum) - 1, the optimum over all of the
  group's measured configurations (within ``max_drop`` when given; a pick measured beyond it
  is counted as ``over_max_drop`` instead); an annotation group (only with ``max_drop``: labels
  cost no FLOPs) is exact when its pick is the coarsest band measured within ``max_drop``.
- Trainings count distinct configurations: a pixel-wise reference shared by a truncation and an
  annotation group is trained once.
- ``analysis.budget``: the adaptive strategy at budgets 1..n trainings per group.

No Ray, no MLflow writes (MLflow is only read, through ``analysis.mlflow_trials``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.drops import drop_table, fit_drops
from analysis.estimator import DEFAULT_R_CE_MAX, LINEAR, Estimator
from analysis.groups import (
    ANNOTATION,
    TRUNCATION,
    Group,
    find_groups,
    is_exact,
    prepare_runs,
)
from analysis.runs import warn
from analysis.strategies import (
    Candidate,
    Choice,
    GroupProblem,
    Pick,
    StrategyOptions,
    make_planner,
    run_planner,
)
from trainables.errors import InputError
from trainables.measures import fpi

if TYPE_CHECKING:
    import pandas as pd

#: Columns of the per-group table.
GROUP_COLUMNS: tuple[str, ...] = (
    "group",
    "kind",
    "dataset",
    "optimal",
    "picked",
    "exact",
    "optimal_fpi",
    "picked_fpi",
    "regret",
    "trainings",
    "configurations",
)


@dataclass(frozen=True)
class Case:
    """A complete group of a finished sweep: the problem a strategy sees, and the truth."""

    problem: GroupProblem
    dataset: str
    measured: dict[str, float]  # candidate key -> measured mIoU (the reference's included)


@dataclass
class BacktestResult:
    """Per group and overall outcome of one strategy's replay."""

    strategy: str
    lodo: bool
    per_group: list[dict[str, Any]]
    exhaustive_trainings: int
    trainings: int
    choices: list[Choice] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # incomplete groups, named

    def summary(self) -> dict[str, Any]:
        """``{strategy, lodo, groups, exact, mean_regret, max_regret, trainings,
        exhaustive_trainings, per_group}`` (regrets over truncation groups; a pick whose
        measured mIoU is 0 has an infinite regret, and so has then the mean and the worst)."""
        regrets = [g["regret"] for g in self.per_group if _regret(g["regret"])]
        violations = sum(not g["within_max_drop"] for g in self.per_group)
        return {
            "strategy": self.strategy,
            "lodo": self.lodo,
            "groups": len(self.per_group),
            "exact": sum(bool(g["exact"]) for g in self.per_group),
            "mean_regret": sum(regrets) / len(regrets) if regrets else None,
            "max_regret": max(regrets) if regrets else None,
            "over_max_drop": violations,
            "trainings": self.trainings,
            "exhaustive_trainings": self.exhaustive_trainings,
            "left_out": self.left_out,
            "per_group": [{k: _json(v) for k, v in g.items()} for g in self.per_group],
        }

    def table(self) -> pd.DataFrame:
        """The per-group rows as a frame (:data:`GROUP_COLUMNS`)."""
        import pandas as pd

        return pd.DataFrame(self.per_group, columns=list(GROUP_COLUMNS))


def _regret(value: Any) -> bool:
    """A regret to summarise: a number, infinite included (NaN: none, e.g. an annotation group
    or a pick beyond ``max_drop``)."""
    return isinstance(value, int | float) and not math.isnan(value)


def _json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------- cases


def build_cases(groups: Sequence[Group], drops: pd.DataFrame) -> tuple[list[Case], list[str]]:
    """Complete groups as cases, and the names of groups left out (no reference, a
    configuration missing or without R_ce), each also warned about once."""
    expected = _expected_configurations(groups)
    cases, left_out = [], []
    for group in groups:
        reason = _incomplete(group, drops, expected)
        if reason:
            left_out.append(f"{group.label}: {reason}")
            continue
        cases.append(_case(group, drops))
    for line in left_out:
        warn(f"backtest leaves out group {line}")
    return cases, left_out


def _siblings_key(group: Group) -> tuple[Any, ...]:
    """What groups that should hold the same configurations share: their kind, input size and
    prune rates (truncation), or the grid they label at (annotation)."""
    first = group.rows.iloc[0]
    size = first.get("input_size")
    size = None if size is None or size != size else float(size)
    if group.kind == ANNOTATION:
        return (group.kind, size, float(first["lrg"]))
    decoder = first.get("decoder_prune_rate")
    decoder = None if decoder is None or decoder != decoder else float(decoder)
    return (group.kind, size, float(first["prune_rate"]), decoder)


def _configurations(group: Group) -> set[float]:
    """The group's LRGs (truncation) or label bands (annotation)."""
    column = "lrg" if group.kind == TRUNCATION else "annotation_nu_max"
    return {float(v) for v in group.rows[column] if v == v}


def _expected_configurations(groups: Sequence[Group]) -> dict[tuple[Any, ...], set[float]]:
    """Per sibling key: the union of the configurations its groups ran, what an exhaustive
    sweep ran in each of them."""
    out: dict[tuple[Any, ...], set[float]] = {}
    for group in groups:
        out.setdefault(_siblings_key(group), set()).update(_configurations(group))
    return out


def _incomplete(
    group: Group, drops: pd.DataFrame, expected: dict[tuple[Any, ...], set[float]]
) -> str:
    if group.unanchored:
        return group.unanchored
    missing = sorted(expected[_siblings_key(group)] - _configurations(group))
    if missing:
        what = "LRG" if group.kind == TRUNCATION else "nu_max"
        return (
            f"not exhaustive: {what} {', '.join(f'{m:g}' for m in missing)} missing "
            "(run by its sibling groups)"
        )
    mine = drops.loc[drops["group"] == group.label]
    if mine["r_ce"].isna().any():
        return "a configuration has no R_ce"
    if len(mine) < 2:
        return "a single configuration"
    return ""


def _case(group: Group, drops: pd.DataFrame) -> Case:
    mine = drops.loc[drops["group"] == group.label]
    candidates = []
    reference = None
    measured = {}
    for row in mine.to_dict("records"):
        nu = row["annotation_nu_max"]
        candidate = Candidate(
            key=str(row["run_id"]),
            lrg=int(row["lrg"]),
            r_ce=float(row["r_ce"]),
            gflops=float(row["gflops"]),
            annotation_nu_max=None if nu is None or nu != nu else float(nu),
        )
        measured[candidate.key] = float(row["miou"])
        if row["is_reference"]:
            reference = candidate
        else:
            candidates.append(candidate)
    assert reference is not None and group.reference is not None
    if group.kind == ANNOTATION and reference.annotation_nu_max is not None:
        reference = Candidate(reference.key, reference.lrg, reference.r_ce, reference.gflops)
    key = group.key
    context = [f"{k}={v}" for k, v in key.items() if k not in ("prune_rate", "lrg")]
    problem = GroupProblem(
        label=group.label,
        kind=group.kind,
        cluster="|".join([group.kind, *context]),
        reference=reference,
        reference_miou=float(group.reference["miou"]),
        candidates=tuple(candidates),
    )
    return Case(problem, str(key["dataset"]), measured)


# --------------------------------------------------------------------- replay


@dataclass
class Sweep:
    """A finished sweep made ready for replays: its complete groups and its drop table."""

    cases: list[Case]
    drops: pd.DataFrame
    left_out: list[str]

    @classmethod
    def from_runs(
        cls, runs: pd.DataFrame, r_ce_max: float = DEFAULT_R_CE_MAX, load_spectra: bool = True
    ) -> Sweep:
        """Prepare, group and check a runs table (``analysis.runs`` columns)."""
        from analysis.spectra import reference_spectrum

        rows = prepare_runs(runs)
        groups = find_groups(rows, reference_spectrum if load_spectra else None)
        return cls.from_groups(groups, drop_table(groups, r_ce_max))

    @classmethod
    def from_groups(cls, groups: Sequence[Group], drops: pd.DataFrame) -> Sweep:
        """From an analysis's groups and drop table (nothing read again)."""
        cases, left_out = build_cases(groups, drops)
        if not cases:
            raise InputError(
                "no complete group to backtest (every group lacks a reference or configurations)"
            )
        return cls(cases, drops, left_out)


def backtest(
    sweep: Sweep,
    strategy: str,
    estimator: Estimator,
    options: StrategyOptions | None = None,
    lodo: bool = False,
    r_ce_max: float = DEFAULT_R_CE_MAX,
    form: str = LINEAR,
) -> BacktestResult:
    """Replay ``strategy`` on a finished sweep (see the module docstring).

    Without ``lodo`` every group is planned with ``estimator``; with it, each data set's groups
    with an estimator of ``form`` fitted on the other data sets (``estimator`` is then unused).
    """
    options = options or StrategyOptions()
    options.check()
    make_planner(strategy, [], estimator, options)  # an unknown name fails before any work
    cases, left_out = list(sweep.cases), list(sweep.left_out)
    if options.max_drop is None:  # labels cost no FLOPs: without a bound nothing is chosen
        skipped = [c for c in cases if c.problem.kind == ANNOTATION]
        left_out += [f"{c.problem.label}: an annotation group needs --max-drop" for c in skipped]
        cases = [c for c in cases if c.problem.kind != ANNOTATION]
    if not cases:
        raise InputError("no group to backtest: " + "; ".join(left_out))
    folds = _folds(cases, sweep.drops, estimator, lodo, r_ce_max, form)
    per_group, choices = [], []
    for fold_cases, fold_estimator in folds:
        planner = make_planner(strategy, [c.problem for c in fold_cases], fold_estimator, options)
        truth = {c.problem.label: c for c in fold_cases}

        def measure(batch: Sequence[Choice], truth: dict[str, Case] = truth) -> list[float]:
            return [truth[c.group].measured[c.candidate.key] for c in batch]

        replay = run_planner(planner, measure)
        choices += planner.choices
        per_group += [_outcome(truth[p.group], p, options) for p in replay.picks]
    # distinct configurations: a pixel-wise reference shared by two groups is one training
    planned = [c for c in cases if c.problem.label in {g["group"] for g in per_group}]
    trained = {c.problem.reference.key for c in planned} | {c.candidate.key for c in choices}
    every = {k for c in planned for k in c.measured}
    return BacktestResult(strategy, lodo, per_group, len(every), len(trained), choices, left_out)


def _folds(
    cases: list[Case],
    drops: pd.DataFrame,
    estimator: Estimator,
    lodo: bool,
    r_ce_max: float,
    form: str,
) -> list[tuple[list[Case], Estimator]]:
    if not lodo:
        return [(cases, estimator)]
    datasets = sorted({c.dataset for c in cases})
    if len(datasets) < 2:
        raise InputError(
            f"--lodo needs runs of two data sets or more; the sweep has {', '.join(datasets)}"
        )
    folds = []
    for held in datasets:
        others = drops.loc[(drops["dataset"] != held)]
        try:
            fitted = fit_drops(others, r_ce_max, source=f"all but {held}", form=form, quiet=True)
        except InputError as err:
            raise InputError(f"--lodo: cannot fit without {held}: {err}") from None
        folds.append(([c for c in cases if c.dataset == held], fitted))
    return folds


def _outcome(case: Case, pick: Pick, options: StrategyOptions) -> dict[str, Any]:
    """The pick against the group's truth."""
    problem = case.problem
    configs = [problem.reference, *problem.candidates]
    ref_miou = problem.reference_miou
    allowed = [
        c
        for c in configs
        if options.max_drop is None
        or (ref_miou - case.measured[c.key]) / ref_miou <= options.max_drop + 1e-12
    ]
    row: dict[str, Any] = {
        "group": problem.label,
        "kind": problem.kind,
        "dataset": case.dataset,
        "trainings": pick.trainings,
        "configurations": problem.size,
    }
    picked = pick.candidate
    within = any(c.key == picked.key for c in allowed)
    row["within_max_drop"] = within  # an untrained pick (paper) may break the bound
    if problem.kind == ANNOTATION:
        best = min(allowed, key=_coarseness)
        row.update(optimal=best.name, picked=picked.name, exact=best.key == picked.key)
        row.update(optimal_fpi=math.nan, picked_fpi=math.nan, regret=math.nan)
        return row
    measured_fpi = {c.key: fpi(c.gflops, case.measured[c.key]) for c in configs}
    best = min(allowed, key=lambda c: (measured_fpi[c.key], -c.lrg))
    row.update(
        optimal=best.lrg,
        picked=picked.lrg,
        exact=within and is_exact(measured_fpi[picked.key], measured_fpi[best.key]),
        optimal_fpi=measured_fpi[best.key],
        picked_fpi=measured_fpi[picked.key],
        # a pick beyond max_drop has no regret: it is a violation (counted in the summary)
        regret=measured_fpi[picked.key] / measured_fpi[best.key] - 1.0 if within else math.nan,
    )
    return row


def _coarseness(candidate: Candidate) -> float:
    nu = candidate.annotation_nu_max
    return math.inf if nu is None else float(nu)


__all__ = [
    "GROUP_COLUMNS",
    "BacktestResult",
    "Case",
    "Sweep",
    "backtest",
    "build_cases",
]
