"""``spectral-sweep train``: run one trial without Ray and print its final metrics.

Every :class:`~trainables.config.TrialConfig` field is a flag (``lrg`` -> ``--lrg``,
``annotation_nu_max`` -> ``--annotation-nu-max``); values are validated by ``TrialConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import POSTHOC_COLUMNS, Metric, r_ce_point_band


def register(sub: Any) -> None:
    """Add the ``train`` parser with one flag per trial setting."""
    p = sub.add_parser(
        "train",
        help="train and evaluate one configuration (no Ray)",
        description=(
            "Train one configuration and print mIoU, boundary IoU, GFLOPs, FPI and the R_ce "
            "curve. Every trial setting is a flag; unset flags keep TrialConfig's defaults."
        ),
    )
    for f in dataclasses.fields(TrialConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "eval_lrgs":
            p.add_argument(
                flag,
                nargs="+",
                type=int,
                default=None,
                metavar="S",
                help="also evaluate the trained model at these LRG sizes (post-hoc)",
            )
        else:
            p.add_argument(
                flag,
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=f"(default: {_default(f)})",
            )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data-set option, e.g. --option image_size=96 (repeatable)",
    )
    p.add_argument("--checkpoint-dir", default=None, help="save (and resume from) checkpoints here")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return "()"


def config_from_args(args: argparse.Namespace) -> TrialConfig:
    """The trial config from the flags that were given (others keep their defaults)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrialConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    extra = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--option {item!r} is not KEY=VALUE")
        extra[key] = _number_or_text(raw)
    if extra:
        values["extra"] = extra
    return TrialConfig.from_dict(values)


def train_command(config: TrialConfig | Mapping[str, Any]) -> str:
    """The ``spectral-sweep train`` command of ``config``: ``--model`` and ``--dataset``, then
    one flag per setting that differs from TrialConfig's default (``extra`` as ``--option
    KEY=VALUE``), shell-quoted. A partial mapping gives the flags of what it holds."""
    from search_spaces.export import non_default

    values = config.to_dict() if isinstance(config, TrialConfig) else dict(config)
    settings = non_default(values)
    named = {k: values[k] for k in ("model", "dataset") if values.get(k) is not None}
    parts = ["spectral-sweep", "train"]
    for name, value in {**named, **settings}.items():
        if name == "extra":
            for key, option in value.items():
                parts += ["--option", f"{key}={_flag_text(option)}"]
        elif name == "eval_lrgs":
            parts += ["--eval-lrgs", *(str(int(s)) for s in value)]
        else:
            parts += ["--" + name.replace("_", "-"), _flag_text(value)]
    return shlex.join(parts)


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number_or_text(raw: str) -> Any:
    try:
        number = float(raw)
    except ValueError:
        return raw
    return int(number) if number.is_integer() else number


def final_summary(result: Any) -> dict[str, Any]:
    """The JSON the command prints: headline metrics, ``r_ce`` by band, post-hoc evaluations."""
    metrics = dict(result.metrics)
    points = {k for k in metrics if r_ce_point_band(k) is not None}
    r_ce = {k.removeprefix("r_ce_"): v for k, v in metrics.items() if k in points}
    summary: dict[str, Any] = {k: v for k, v in metrics.items() if k not in points}
    summary["r_ce"] = r_ce
    summary["per_class_iou"] = result.reports[-1].per_class_iou if result.reports else []
    if result.posthoc:
        summary["posthoc"] = {str(s): m for s, m in result.posthoc.items()}
    summary["config"] = result.config.to_dict()
    return _json_safe(summary)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Train, then print the summary (JSON or a short table)."""
    from trainables.checkpoint import check_checkpoint_dir
    from trainables.trial import TrialDiverged, TrialReport, run_trial

    cfg = config_from_args(args)
    if args.checkpoint_dir is not None:  # named as the flag; run_trial checks it again
        check_checkpoint_dir(args.checkpoint_dir, "--checkpoint-dir")
    show_progress = not args.no_progress and sys.stderr.isatty()

    def on_report(report: TrialReport) -> None:
        m = report.metrics
        scores = (
            f"loss {m['loss']:.4f} miou {m['miou']:.4f} boundary_iou {m['boundary_iou']:.4f} "
            f"gflops {m['gflops']:.4g} fpi {m['fpi']:.4g}"
        )
        if math.isnan(m.get(Metric.TRAIN_LOSS, 0.0)):  # a finished checkpoint, evaluated again
            print(
                f"checkpoint in {args.checkpoint_dir} is trained ({cfg.epochs} of {cfg.epochs} "
                f"epochs): nothing trained, evaluated: {scores}",
                file=sys.stderr,
            )
            return
        print(f"epoch {report.epoch + 1}/{cfg.epochs}: {scores}", file=sys.stderr)

    try:
        result = run_trial(
            cfg, report=on_report, checkpoint_dir=args.checkpoint_dir, progress=show_progress
        )
    except TrialDiverged as err:
        print(f"spectral-sweep train: trial stopped: {err}", file=sys.stderr)
        return 1
    summary = final_summary(result)
    if args.json:
        from orchestrator.table import naturally_sorted

        print(json.dumps(naturally_sorted(summary), indent=None))
    else:
        print_summary(summary)
    return 0


def print_summary(summary: Mapping[str, Any]) -> None:
    """The final metrics (4 significant digits), R_ce by band and the post-hoc results as a
    table (one row per LRG: the final model evaluated there, not retrained)."""
    from orchestrator.table import cell, format_table, natural_key

    headline = (Metric.MIOU, Metric.BOUNDARY_IOU, Metric.PIXEL_ACC, Metric.LOSS)
    for key in (*headline, Metric.GFLOPS, Metric.PARAMS, Metric.FPI):
        value = summary.get(key)
        text = f"{int(value):,}" if key == Metric.PARAMS and value is not None else cell(value)
        print(f"{key:>14}: {text}")
    for band in sorted(summary["r_ce"], key=natural_key):
        print(f"{'r_ce ' + band:>14}: {cell(summary['r_ce'][band])}")
    posthoc = summary.get("posthoc") or {}
    if posthoc:
        rows = [{Metric.LRG: int(s), **m} for s, m in posthoc.items()]
        print("post-hoc truncation (the final model evaluated at each LRG, not retrained):")
        print(format_table(rows, list(POSTHOC_COLUMNS)))
