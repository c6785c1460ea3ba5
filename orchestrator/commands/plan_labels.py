"""``spectral-sweep plan --labels-only``: a plan from a data set's labels alone, before any
training (``analysis.labels_only``): its flags, the run and the table."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.commands import check_max_drop
from trainables.config import check_input_size
from trainables.dataset_registry import check_root_applies


def add_labels_only(p: Any) -> None:
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
LABELS_ONLY_FLAGS = {
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


#: Label-only table columns printed, with their headers (FLOPs/FPI columns when counted).
_LABEL_COLUMNS = {
    "lrg": "lrg",
    "nu_max": "nu_max",
    "r_ce_label": "r_ce_label",
    "energy_above": "energy_above",
    "predicted_drop": "predicted_drop",
    "gflops": "gflops",
    "relative_fpi": "relative_fpi",
    "predicted_miou": "predicted_miou",
    "predicted_fpi": "predicted_fpi",
    "feasible": "feasible",
    "extrapolated": "extrapolated",
}


def run_labels_only(args: argparse.Namespace) -> int:
    """``plan --labels-only``: read the labels, count FLOPs if asked, predict, print."""
    from analysis.labels_only import candidate_lrgs, label_curves, labels_only_plan
    from orchestrator.commands.plan_outputs import (
        architecture_label,
        check_space_out,
        labels_only_recommendation,
        print_recommendation,
        with_progress,
    )
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
    if args.input_size is not None:
        check_input_size(args.input_size, "--input-size")
    if args.data_root is not None:
        check_root_applies(args.dataset, repr(args.data_root))
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
    out = check_space_out(args.out)
    from orchestrator.commands.plan import plan_estimator, with_command, write_out

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
        label = architecture_label(args.model, args.backbone, input_size)
        reports = with_progress(
            f"{len(grids)} LRGs for {label}",
            lambda: grid_flops(args.model, args.backbone, input_size, curves.num_classes, grids),
        )
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
    recommendation = labels_only_recommendation(plan, args)
    if args.json:
        payload = plan.to_dict()
        payload.update(model=args.model, backbone=args.backbone)
        print(json.dumps(with_command(payload, recommendation), indent=2))
    else:
        _print_labels_only(plan, args)
        print_recommendation(recommendation)
    source = f"the labels of {args.dataset} ({args.split})"
    return write_out(out, [recommendation], f"plan-{args.dataset}", source, args.json)


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
