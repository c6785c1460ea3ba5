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
    _add_labels_only(p)
    p.set_defaults(func=run)


def _add_labels_only(p: Any) -> None:
    """The ``--labels-only`` flag and the data-set / architecture flags it reads."""
    g = p.add_argument_group(
        "label-only prediction (no run, no MLflow)",
        "Predict the drop of each LRG from the labels' spectrum alone: the R_ce curve of an "
        "ideal predictor T * onehot(labels), through the estimator (default paper).",
    )
    g.add_argument(
        "--labels-only",
        action="store_true",
        help="predict from the labels of --dataset instead of a reference run",
    )
    g.add_argument(
        "--dataset", default=None, metavar="NAME", help="a registered data set, e.g. voc"
    )
    g.add_argument(
        "--data-root", default=None, metavar="DIR", help="data set root (not for synthetic sets)"
    )
    g.add_argument(
        "--split", default="val", metavar="S", help="split to read (default val, as evaluated)"
    )
    g.add_argument("--limit", type=int, default=None, metavar="N", help="read at most N labels")
    g.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data-set option, e.g. --option length=16 (repeatable)",
    )
    g.add_argument(
        "--input-size", type=int, default=None, metavar="S", help="eval crop size S (default 513)"
    )
    g.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="C",
        help="class count (default: data set's)",
    )
    g.add_argument(
        "--seed", type=int, default=None, metavar="N", help="data seed (synthetic sets; default 0)"
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="ideal predictor's temperature (default: the T whose CE is 0.1)",
    )
    g.add_argument(
        "--regressor",
        default=None,
        choices=["r_ce_label", "energy_above"],
        help="curve the estimator reads: label energy above each band (default; it backtests better on the demo) or the ideal predictor's R_ce",
    )
    g.add_argument(
        "--model", default=None, help="count each LRG's FLOPs for this model (e.g. deeplabv3plus)"
    )
    g.add_argument("--backbone", default=None, help="backbone of --model (default resnet101)")
    g.add_argument(
        "--reference-miou",
        type=float,
        default=None,
        metavar="M",
        help="expected mIoU at the native grid (a fraction): adds predicted mIoU and FPI",
    )


#: Flags that only --labels-only reads, by attribute, with their flag names.
_LABELS_ONLY_FLAGS = {
    "dataset": "--dataset",
    "data_root": "--data-root",
    "limit": "--limit",
    "option": "--option",
    "input_size": "--input-size",
    "num_classes": "--num-classes",
    "seed": "--seed",
    "temperature": "--temperature",
    "regressor": "--regressor",
    "model": "--model",
    "backbone": "--backbone",
    "reference_miou": "--reference-miou",
}


def run(args: argparse.Namespace) -> int:
    """Read the reference run(s), plan, print the table(s) or JSON."""
    import warnings

    from trainables.errors import InputError

    if args.labels_only:
        return run_labels_only(args)
    given = [f for name, f in _LABELS_ONLY_FLAGS.items() if getattr(args, name) not in (None, [])]
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
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    check_max_drop(args.max_drop)
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


# --------------------------------------------------------------------- --labels-only

#: Label-only table columns printed, with their headers (FLOPs/FPI columns when counted).
_LABEL_COLUMNS = {
    "lrg": "lrg",
    "nu_max": "nu_max",
    "r_ce_label": "r_ce_label",
    "energy_above": "energy_above",
    "predicted_drop": "pred_drop",
    "gflops": "gflops",
    "relative_fpi": "rel_fpi",
    "predicted_miou": "pred_miou",
    "predicted_fpi": "pred_fpi",
    "feasible": "feasible",
    "extrapolated": "extrapolated",
}


def run_labels_only(args: argparse.Namespace) -> int:
    """``plan --labels-only``: read the labels, count FLOPs if asked, predict, print."""
    from analysis.labels_only import candidate_lrgs, label_curves, labels_only_plan
    from orchestrator.commands.spectrum import parse_options
    from trainables.errors import InputError
    from trainables.grids import native_grid_size

    flags = ("--run-id", "--experiment") + (() if args.estimator_from else ("--tracking-uri",))
    for flag in flags:
        if getattr(args, flag[2:].replace("-", "_")) is not None:
            raise InputError(f"--labels-only predicts without a run: drop {flag}")
    if args.dataset is None:
        from trainables.data import list_datasets

        names = ", ".join(list_datasets())
        raise InputError(f"--labels-only needs --dataset NAME; choose from: {names}")
    check_max_drop(args.max_drop)
    for flag, value in (
        ("--limit", args.limit),
        ("--input-size", args.input_size),
        ("--num-classes", args.num_classes),
    ):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value} must be >= 1")
    if args.reference_miou is not None and not 0.0 < args.reference_miou <= 1.0:
        raise InputError(f"--reference-miou {args.reference_miou} is not a fraction in (0, 1]")
    if args.temperature is not None:
        from trainables.spectral.ideal import check_temperature

        check_temperature(args.temperature)
    if args.backbone is not None and args.model is None:
        raise InputError("--backbone needs --model (the architecture whose FLOPs are counted)")
    if args.model is not None:
        from trainables.models import check_backbone, check_model

        args.backbone = args.backbone or "resnet101"
        check_model(args.model)
        check_backbone(args.backbone)
    estimator = plan_estimator(args, None)
    input_size = args.input_size or 513
    native = native_grid_size(input_size)
    candidates = candidate_lrgs(args.lrgs, input_size, native)  # checked before any reading
    curves = label_curves(
        args.dataset,
        data_root=args.data_root,
        split=args.split,
        input_size=input_size,
        num_classes=args.num_classes,
        options=parse_options(args.option),
        limit=args.limit,
        temperature=args.temperature,
        seed=args.seed or 0,
    )
    gflops = None
    if args.model is not None:
        from trainables.flops import grid_flops

        grids = sorted({*candidates, native})
        reports = grid_flops(args.model, args.backbone, input_size, curves.num_classes, grids)
        gflops = {int(s): r.gflops for s, r in reports.items() if s is not None}
    plan = labels_only_plan(
        curves,
        estimator,
        candidates,
        native_lrg=native,
        gflops=gflops,
        max_drop=args.max_drop,
        reference_miou=args.reference_miou,
        regressor=args.regressor or "energy_above",
    )
    if args.json:
        payload = plan.to_dict()
        payload.update(model=args.model, backbone=args.backbone)
        print(json.dumps(payload, indent=2))
        return 0
    _print_labels_only(plan, args)
    return 0


def _print_labels_only(plan: Any, args: argparse.Namespace) -> None:
    from orchestrator.table import format_table

    ctx = plan.context
    print(
        f"labels only: {ctx['dataset']} ({ctx['split']}, {ctx['n_images']} labels at "
        f"{ctx['input_size']}x{ctx['input_size']}, {ctx['num_classes']} classes); ideal "
        f"predictor T = {ctx['temperature']:.4g} (CE {ctx['ideal_ce']:.4g})"
    )
    print(f"estimator: {plan.estimator.describe()}, reading {plan.regressor}")
    arch = f", FLOPs of {args.model} ({args.backbone})" if args.model else ""
    print(f"native grid {plan.native_lrg} (drop 0 by definition){arch}")
    columns = [c for c in _LABEL_COLUMNS if not bool(plan.table[c].isna().all())]
    print(format_table(plan.table.to_dict("records"), columns, _LABEL_COLUMNS))
    if plan.recommended is None:
        print(f"no recommendation ({plan.rule})")
    else:
        row = plan.table.loc[plan.table["lrg"] == plan.recommended].iloc[0]
        extra = ""
        if args.model:
            extra = f", {row['gflops']:.4g} GFLOPs, relative FPI {row['relative_fpi']:.4g}"
        print(
            f"recommended LRG: {plan.recommended} ({plan.rule}; predicted drop "
            f"{row['predicted_drop']:.2%}{extra})"
        )
    if bool(plan.table["extrapolated"].any()):
        print(
            f"extrapolated: {plan.regressor} >= {plan.estimator.r_ce_max:g}, beyond the estimator's "
            "fitted range (a rough prediction)"
        )
