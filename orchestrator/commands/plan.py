"""``spectral-sweep plan``: pick an LRG from one reference run instead of running a sweep.

Reads the reference run (params, final mIoU, the R_ce curve of its spectrum.csv), counts the
FLOPs of each candidate LRG (counting only, no training), predicts each candidate's mIoU drop
with an estimator (a file from ``analyze`` or the paper's) and recommends the LRG with the least
predicted FPI within ``--max-drop``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.commands import add_max_drop, add_tracking_uri, check_max_drop

#: Plan-table columns printed, with their headers.
_COLUMNS = {
    "lrg": "lrg",
    "nu_max": "nu_max",
    "r_ce": "r_ce",
    "predicted_drop": "pred_drop",
    "predicted_miou": "pred_miou",
    "gflops": "gflops",
    "predicted_fpi": "pred_fpi",
    "feasible": "feasible",
    "extrapolated": "extrapolated",
}


def register(sub: Any) -> None:
    """Add the ``plan`` parser."""
    p = sub.add_parser(
        "plan",
        help="recommend an LRG from one reference run and an estimator (no sweep)",
        description=(
            "Predict mIoU drop, mIoU and FPI of candidate LRG sizes from a reference run's R_ce "
            "curve and the estimator drop = a*R_ce + b, count each candidate's FLOPs, and "
            "recommend the least predicted FPI within --max-drop. With --experiment: one plan "
            "per reference run (the native grid of each model/dataset/prune-rate group)."
        ),
    )
    p.add_argument(
        "--estimator",
        required=True,
        metavar="FILE|paper",
        help="estimator.json written by `spectral-sweep analyze`, or 'paper' for the paper's",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="MLflow run id of the reference run (native grid)")
    which.add_argument("--experiment", help="plan for every reference run of this experiment")
    add_tracking_uri(p)
    p.add_argument(
        "--lrgs",
        nargs="+",
        type=int,
        default=None,
        metavar="S",
        help="candidate LRG sizes (default: the paper's sizes scaled to the input, plus native)",
    )
    add_max_drop(p)
    p.add_argument("--json", action="store_true", help="print the plan(s) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the reference run(s), plan, print the table(s) or JSON."""
    import warnings

    from analysis.estimator import load_estimator
    from analysis.plan import plan_reference
    from analysis.references import reference_from_run, references_from_experiment
    from analysis.runs import AnalysisWarning
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    check_max_drop(args.max_drop)
    estimator = load_estimator(args.estimator)
    uri = resolve_tracking_uri(args.tracking_uri)
    check_store_exists(uri)
    if args.run_id:
        references = [reference_from_run(uri, args.run_id)]
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AnalysisWarning)
            references = references_from_experiment(uri, args.experiment)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    plans = [plan_reference(estimator, ref, args.lrgs, args.max_drop) for ref in references]
    if args.json:
        payload: Any = [p.to_dict() for p in plans]
        print(json.dumps(payload[0] if args.run_id else payload, indent=2))
        return 0
    print(f"estimator: {estimator.describe()}")
    for plan in plans:
        print()
        _print_plan(plan)
    return 0


def _print_plan(plan: Any) -> None:
    from orchestrator.table import format_table

    ctx = plan.context
    print(
        f"reference run {ctx['run_id']}: {ctx['model']} ({ctx['backbone']}) on {ctx['dataset']}, "
        f"input {ctx['input_size']}, prune {ctx['prune_rate']:g}/{ctx['decoder_prune_rate']:g}, "
        f"LRG {plan.reference_lrg}, mIoU {plan.reference_miou:.4f}"
    )
    print(format_table(plan.table.to_dict("records"), list(_COLUMNS), _COLUMNS))
    if plan.recommended is None:
        bound = f" within max drop {plan.max_drop:g}" if plan.max_drop is not None else ""
        print(f"no feasible LRG{bound}")
    else:
        row = plan.table.loc[plan.table["lrg"] == plan.recommended].iloc[0]
        print(
            f"recommended LRG: {plan.recommended} (predicted mIoU {row['predicted_miou']:.4f}, "
            f"drop {row['predicted_drop']:.2%}, {row['gflops']:.4g} GFLOPs, "
            f"FPI {row['predicted_fpi']:.4g})"
        )
    if bool(plan.table["extrapolated"].any()):
        print("extrapolated: R_ce beyond the estimator's fitted range (a rough prediction)")
