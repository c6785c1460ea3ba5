"""``spectral-sweep backtest``: replay a sweep-skipping strategy on a finished exhaustive sweep.

The strategy (``analysis.strategies``) sees only what it would have had live: each group's
reference (mIoU, R_ce curve), the FLOPs of every candidate, and the measured mIoU of exactly the
configurations it decides to train, looked up in the sweep (``analysis.backtest``). Prints, per
group, the pick against the group's FPI optimum (exact, regret, trainings), the overall
figures, and the budget curve (regret against trainings per group); ``--json`` prints one
object, ``--out DIR`` also writes the tables and the budget-curve plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from orchestrator.commands import add_max_drop, add_tracking_uri
from trainables.errors import InputError

#: Columns of the per-group table, with their headers.
_GROUP_COLUMNS = {
    "group": "group",
    "optimal": "optimal",
    "picked": "picked",
    "exact": "exact",
    "optimal_fpi": "optimal_fpi",
    "picked_fpi": "picked_fpi",
    "regret": "regret",
    "trainings": "trainings",
    "configurations": "of",
}


def register(sub: Any) -> None:
    """Add the ``backtest`` parser."""
    from analysis.strategies import strategy_names

    p = sub.add_parser(
        "backtest",
        help="replay a sweep-skipping strategy on a finished exhaustive sweep",
        description=(
            "Replay a strategy (paper: reference + estimator; adaptive: train what is likely to "
            "beat the best measured FPI) on a finished exhaustive sweep, seeing only what it "
            "would have had live, and report its picks against each group's FPI optimum, the "
            "trainings it used and the budget curve (regret against trainings per group)."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", help="MLflow experiment of the exhaustive sweep")
    source.add_argument("--runs-csv", metavar="FILE", help="runs table (as `analyze` takes)")
    add_tracking_uri(p)
    p.add_argument("--strategy", required=True, choices=strategy_names())
    add_strategy_flags(p)
    p.add_argument(
        "--lodo",
        action="store_true",
        help="fit the estimator without the held-out data set, for each data set in turn",
    )
    p.add_argument(
        "--form",
        choices=("linear", "saturating"),
        default="linear",
        help="with --lodo: the estimator's form (default linear, the paper's)",
    )
    p.add_argument(
        "--estimator",
        default=None,
        metavar="FILE|paper",
        help="estimator without --lodo: estimator.json from `analyze`, or 'paper' (default)",
    )
    p.add_argument(
        "--r-ce-max", type=float, default=0.2, metavar="X", help="the fit's R_ce bound (0.2)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="DIR", help="also write the tables and the budget curve here")
    p.set_defaults(func=run)


def add_strategy_flags(p: Any, max_drop: bool = True) -> None:
    """The strategy knobs ``backtest`` and ``sweep`` share (``StrategyOptions``)."""
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        metavar="K",
        help="adaptive: at most K trainings per group, the reference included (default: no limit)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        metavar="T",
        help="adaptive: stop when no candidate is likely to beat the best FPI by more than T "
        "(default 0.01)",
    )
    p.add_argument(
        "--stop-probability",
        type=float,
        default=0.1,
        metavar="P",
        help="adaptive: 'likely' means a probability of at least P (default 0.1)",
    )
    if max_drop:
        add_max_drop(p)


def check_adaptive_only(args: argparse.Namespace, why: str = "") -> None:
    """The adaptive strategy's own flags (``add_strategy_flags``) given to another strategy
    are an error, not ignored; ``why`` ends the line."""
    adaptive_only = {
        "--budget": args.budget is not None,
        "--tolerance": args.tolerance != 0.01,
        "--stop-probability": args.stop_probability != 0.1,
    }
    for flag, given in adaptive_only.items():
        if given:
            raise InputError(f"{flag} needs --strategy adaptive{why}")


def strategy_options(args: argparse.Namespace) -> Any:
    """The validated ``StrategyOptions`` of the shared flags."""
    from analysis.strategies import StrategyOptions

    options = StrategyOptions(
        tolerance=args.tolerance,
        budget=args.budget,
        max_drop=args.max_drop,
        stop_probability=args.stop_probability,
    )
    options.check()
    return options


def run(args: argparse.Namespace) -> int:
    """Load the sweep, replay the strategy, print (and write) the outcome."""
    import warnings

    from analysis.backtest import Sweep, backtest
    from analysis.budget import budget_curve, budget_summary
    from analysis.estimator import load_estimator
    from analysis.runs import AnalysisWarning

    options = strategy_options(args)
    if args.strategy != "adaptive":
        check_adaptive_only(args, " (paper trains references only)")
    if args.lodo and args.estimator is not None:
        raise InputError("--lodo fits its own estimator per data set; drop --estimator")
    if args.form != "linear" and not args.lodo:
        raise InputError("--form applies to the estimators --lodo fits")
    if args.runs_csv and args.tracking_uri:
        raise InputError("--tracking-uri goes with --experiment, not with --runs-csv")
    if not args.r_ce_max > 0:
        raise InputError(f"--r-ce-max {args.r_ce_max} must be > 0")
    estimator = load_estimator(args.estimator or "paper")
    out = _check_out(args.out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        sweep = Sweep.from_runs(_load_runs(args), args.r_ce_max)
        result = backtest(
            sweep, args.strategy, estimator, options, args.lodo, args.r_ce_max, args.form
        )
        curve = budget_curve(
            sweep, estimator, options, args.lodo, args.r_ce_max, args.form, args.strategy
        )
    for note in dict.fromkeys(str(w.message) for w in caught):
        print(f"warning: {note}", file=sys.stderr)
    summary = result.summary()
    summary["budget_curve"] = [
        {k: _plain(v) for k, v in row.items()} for row in budget_summary(curve).to_dict("records")
    ]
    if out is not None:
        _write(out, result, curve, summary)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _print(result, summary)
    return 0


def _load_runs(args: argparse.Namespace) -> Any:
    from analysis.mlflow_trials import load_runs_mlflow
    from analysis.runs import load_runs_csv

    if args.runs_csv:
        return load_runs_csv(args.runs_csv)
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_store_exists(uri)
    return load_runs_mlflow(uri, args.experiment)


def _check_out(value: str | None) -> Any:
    from orchestrator.commands import check_output_dir

    return None if value is None else check_output_dir(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _write(out: Any, result: Any, curve: Any, summary: dict[str, Any]) -> None:
    from analysis.plots import plot_budget_curve
    from orchestrator.commands import make_output_dir
    from trainables.run_schema import Artifact

    make_output_dir(out)
    (out / Artifact.BACKTEST_JSON).write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    result.table().to_csv(out / Artifact.BACKTEST_GROUPS_CSV, index=False)
    choices = [
        {"group": c.group, "configuration": c.candidate.name, "reason": c.reason()}
        for c in result.choices
    ]
    import pandas as pd

    pd.DataFrame(choices, columns=["group", "configuration", "reason"]).to_csv(
        out / Artifact.BACKTEST_CHOICES_CSV, index=False
    )
    curve.to_csv(out / Artifact.BUDGET_CURVE_CSV, index=False)
    plot_budget_curve(curve, out / "budget_curve.png")


def _print(result: Any, summary: dict[str, Any]) -> None:
    from orchestrator.table import format_table

    lodo = " (leave-one-data-set-out)" if result.lodo else ""
    print(f"strategy {result.strategy}{lodo}")
    print(format_table(summary["per_group"], list(_GROUP_COLUMNS), _GROUP_COLUMNS))
    print()
    print(describe(summary))
    for line in summary["left_out"]:
        print(f"left out: {line}")
    print()
    print("budget curve (trainings per group, the reference included):")
    rows = summary["budget_curve"]
    print(format_table(rows, ["budget", "mean_regret", "max_regret", "exact", "trainings"]))


def _percent(regret: float) -> str:
    """A regret as a percentage; an infinite one (a pick whose measured mIoU is 0) in words."""
    return f"{regret:.2%}" if math.isfinite(regret) else "unbounded (a pick measured mIoU 0)"


def describe(summary: dict[str, Any]) -> str:
    """One line: exact picks, mean and worst regret, trainings against the exhaustive sweep."""
    share = summary["trainings"] / summary["exhaustive_trainings"]
    mean, worst = summary["mean_regret"], summary["max_regret"]
    regret = (
        f"mean FPI regret {_percent(mean)}, worst {_percent(worst)}"
        if mean is not None
        else "no FPI groups"
    )
    over = summary["over_max_drop"]
    beyond = f"; {over} pick(s) beyond --max-drop" if over else ""
    return (
        f"exact picks {summary['exact']}/{summary['groups']}; {regret}; trainings "
        f"{summary['trainings']} of {summary['exhaustive_trainings']} ({share:.0%}){beyond}"
    )
