"""``spectral-sweep plan``: pick an LRG from one reference run instead of running a sweep.

Reads the reference run (params, final mIoU, the R_ce curve of its spectrum.csv), counts the
FLOPs of each candidate LRG (counting only, no training), predicts each candidate's mIoU drop
with an estimator (a file from ``analyze`` or the paper's) and recommends the LRG with the least
predicted FPI within ``--max-drop``.

``--labels-only --dataset NAME``: no run at all; the drop is predicted from the labels' spectrum
(the R_ce curve of an ideal predictor built from the labels, ``analysis.labels_only``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.commands import (
    add_estimator_from,
    add_max_drop,
    add_tracking_uri,
    check_max_drop,
    parse_experiments,
)
from orchestrator.commands.plan_labels import LABELS_ONLY_FLAGS, add_labels_only, run_labels_only

#: Plan-table columns printed, with their headers.
_COLUMNS = {
    "lrg": "lrg",
    "nu_max": "nu_max",
    "r_ce": "r_ce",
    "predicted_drop": "predicted_drop",
    "predicted_miou": "predicted_miou",
    "gflops": "gflops",
    "predicted_fpi": "predicted_fpi",
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
            "per reference run (the native grid of each model/dataset/prune-rate group). With "
            "--labels-only: from a data set's labels alone, before any training."
        ),
    )
    p.add_argument(
        "--estimator",
        default=None,
        metavar="FILE|paper",
        help=(
            "estimator.json written by `spectral-sweep analyze`, or 'paper' for the paper's "
            "(required unless --estimator-from, or with --labels-only: default paper)"
        ),
    )
    add_estimator_from(p)
    # one of them is required without --labels-only (checked in run)
    which = p.add_mutually_exclusive_group()
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
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write the recommended trial (one per plan) as a space file (*.yaml) for "
        "`sweep --space-file`",
    )
    add_labels_only(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the reference run(s), plan, print the table(s) or JSON."""
    import warnings

    from trainables.errors import InputError

    if args.labels_only:
        return run_labels_only(args)
    given = [f for name, f in LABELS_ONLY_FLAGS.items() if getattr(args, name) not in (None, [])]
    if args.split != "val":
        given.append("--split")
    if given:
        raise InputError(f"{given[0]} needs --labels-only")
    if args.estimator is None and args.estimator_from is None:
        raise InputError("give --estimator FILE|paper or --estimator-from E1,E2")
    if not (args.run_id or args.experiment):
        raise InputError("one of the arguments --run-id --experiment is required")

    from analysis.plan import plan_reference
    from analysis.references import reference_from_run, references_from_experiment
    from analysis.runs import AnalysisWarning
    from orchestrator.commands.plan_outputs import (
        check_space_out,
        count_reference,
        print_recommendation,
        reference_recommendation,
        run_configs,
    )
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    check_max_drop(args.max_drop)
    out = check_space_out(args.out)
    uri = resolve_tracking_uri(args.tracking_uri)
    check_store_exists(uri)
    estimator = plan_estimator(args, uri)
    if args.run_id:
        references = [reference_from_run(uri, args.run_id)]
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AnalysisWarning)
            references = references_from_experiment(uri, args.experiment)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    plans = []
    for ref in references:
        count_reference(ref, args.lrgs)  # progress lines; the plan finds the counts cached
        plans.append(plan_reference(estimator, ref, args.lrgs, args.max_drop))
    configs = run_configs(uri, [str(p.context["run_id"]) for p in plans if p.recommended])
    recommendations = [reference_recommendation(p, configs) for p in plans]
    if args.json:
        payload: Any = [
            with_command(p.to_dict(), r) for p, r in zip(plans, recommendations, strict=True)
        ]
        print(json.dumps(payload[0] if args.run_id else payload, indent=2))
    else:
        print(f"estimator: {estimator.describe()}")
        for plan, recommendation in zip(plans, recommendations, strict=True):
            print()
            _print_plan(plan)
            print_recommendation(recommendation)
    source = f"run {args.run_id}" if args.run_id else f"experiment {args.experiment!r}"
    name = f"plan-{args.run_id or args.experiment}"
    return write_out(out, recommendations, name, source, args.json)


def with_command(payload: dict[str, Any], recommendation: Any) -> dict[str, Any]:
    """A plan's JSON with the train command of its recommendation (null without one)."""
    payload["train_command"] = recommendation.command if recommendation is not None else None
    if recommendation is not None and recommendation.missing:
        payload["train_command_missing"] = recommendation.missing
    return payload


def write_out(
    out: Any, recommendations: list[Any], name: str, source: str, as_json: bool = False
) -> int:
    """``--out FILE``: the recommended trials as a space file; exit 1 when no plan has one.
    The line naming the file goes to stderr under ``--json`` (stdout stays JSON)."""
    from orchestrator.commands.plan_outputs import sweep_command, write_recommendations

    if out is None:
        return 0
    chosen = [r for r in recommendations if r is not None]
    if not chosen:
        print(f"not written: {out} (no plan has a recommendation)", file=sys.stderr)
        return 1
    path = write_recommendations(out, chosen, name, source)
    trials = f"{len(chosen)} trial{'s' if len(chosen) != 1 else ''}"
    print(
        f"wrote {path} ({trials}); rerun: {sweep_command(path)}",
        file=sys.stderr if as_json else sys.stdout,
    )
    return 0


def plan_estimator(args: argparse.Namespace, uri: str | None) -> Any:
    """``--estimator`` (default paper), or a fit on ``--estimator-from``'s experiments."""
    from analysis.estimator import load_estimator
    from trainables.errors import InputError

    if args.estimator_from is None:
        return load_estimator(args.estimator or "paper")
    if args.estimator is not None:
        raise InputError("give --estimator or --estimator-from, not both")
    from analysis.sweep import fit_experiments
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    if uri is None:  # --labels-only reads no run, only the experiments to fit on
        uri = resolve_tracking_uri(args.tracking_uri)
        check_store_exists(uri)
    return fit_experiments(uri, parse_experiments(args.estimator_from))


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
