"""``spectral-sweep sweep --dry-run``: the trial table, then the estimated compute of the sweep
(``orchestrator.compute``), in GPU-hours with ``--gpu NAME`` or ``--device-tflops T``, and what a
strategy (``--strategy estimate|paper|adaptive``) trains at least. No Ray.

The table prints before any FLOPs are counted; counting builds each distinct architecture once
(a second or two for the CPU spaces, about half a minute per ResNet-101 network at 513), with a
progress line per network on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import Strategy


def add_cost_flags(p: Any) -> None:
    """``--gpu``, ``--device-tflops`` and ``--utilisation`` (with ``--dry-run``)."""
    from orchestrator.compute import DEFAULT_UTILISATION, GPU_TFLOPS

    known = ", ".join(f"{n} {t:g}" for n, t in GPU_TFLOPS.items())
    g = p.add_argument_group(
        "compute estimate (--dry-run)",
        "--dry-run prints the sweep's estimated FLOPs; with a GPU rating also GPU-hours",
    )
    rating = g.add_mutually_exclusive_group()
    rating.add_argument(
        "--gpu",
        default=None,
        metavar="NAME",
        help=f"a known GPU's peak dense bf16 TFLOPS ({known}; V100: fp16)",
    )
    rating.add_argument(
        "--device-tflops",
        type=float,
        default=None,
        metavar="T",
        help="a device's sustained TFLOPS instead of --gpu (used as it is, no utilisation)",
    )
    g.add_argument(
        "--utilisation",
        type=float,
        default=None,
        metavar="U",
        help=f"share of the peak a training sustains (default {DEFAULT_UTILISATION} with --gpu, "
        "1 with --device-tflops)",
    )


def check_cost_flags(args: argparse.Namespace) -> tuple[float, float, str] | None:
    """The (TFLOPS, utilisation, label) the flags ask for, None without a rating; cost flags
    without ``--dry-run`` and values out of range are InputErrors."""
    from orchestrator.compute import DEFAULT_UTILISATION, GPU_TFLOPS, gpu_name

    given = [
        flag
        for flag, value in (
            ("--gpu", args.gpu),
            ("--device-tflops", args.device_tflops),
            ("--utilisation", args.utilisation),
        )
        if value is not None
    ]
    if given and not args.dry_run:
        raise InputError(f"{given[0]} estimates compute: it goes with --dry-run")
    if args.utilisation is not None:
        if args.gpu is None and args.device_tflops is None:
            raise InputError("--utilisation needs --gpu NAME or --device-tflops T")
        if not 0.0 < args.utilisation <= 1.0:
            raise InputError(f"--utilisation {args.utilisation} is not a fraction in (0, 1]")
    if args.gpu is not None:
        name = gpu_name(args.gpu)
        tflops = GPU_TFLOPS[name]
        utilisation = DEFAULT_UTILISATION if args.utilisation is None else args.utilisation
        return tflops, utilisation, f"{name} ({tflops:g} TFLOPS peak dense bf16)"
    if args.device_tflops is not None:
        if not args.device_tflops > 0:
            raise InputError(f"--device-tflops {args.device_tflops} must be > 0")
        utilisation = 1.0 if args.utilisation is None else args.utilisation  # sustained
        return args.device_tflops, utilisation, f"{args.device_tflops:g} TFLOPS sustained"
    return None


def dry_run(args: argparse.Namespace, space: Any) -> int:
    """Print the trials, then the compute estimate and the strategy's least trainings."""
    rating = check_cost_flags(args)
    trials = list(space.trials())
    references: list[TrialConfig] = []
    if args.strategy != Strategy.EXHAUSTIVE:
        references = strategy_references(args, space.name, trials)
    from orchestrator.compute import estimate, plan_counts

    keys = {t.key for t in trials}
    added = [r for r in references if r.key not in keys]
    plan = plan_counts([*trials, *added])
    for backbone in plan.uncounted_backbones():  # torch and timm count them anyway
        from trainables.models import check_backbone

        check_backbone(backbone)  # an unknown name is one line, before the table
    print_trials(space)
    sys.stdout.flush()  # the table is out before counting starts
    began = time.perf_counter()
    progress = _progress()
    computes = estimate([*trials, *added], progress, plan)
    if progress.counted:  # nothing counted: every count came from the disk cache
        print(f"counted FLOPs in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    by_key = {t.key: c for t, c in zip([*trials, *added], computes, strict=True)}
    print()
    print_compute(trials, [by_key[t.key] for t in trials], rating, args)
    if references:
        print_strategy(args, trials, references, by_key, rating)
    return 0


def strategy_references(
    args: argparse.Namespace, name: str, trials: Sequence[TrialConfig]
) -> list[TrialConfig]:
    """The references a strategy trains first (refused as the live strategy refuses)."""
    from analysis.strategy import estimate_groups, reference_trials

    if args.search != "grid" or args.scheduler != "fifo":
        raise InputError(
            f"--strategy {args.strategy} trains fixed trials per phase; --search optuna and "
            "--scheduler asha do not apply"
        )
    groups = estimate_groups(trials)
    if not groups:
        raise InputError(
            f"space {name!r} has no trials to predict (every group is a single trial); "
            "run it with --strategy exhaustive"
        )
    return reference_trials(groups)


def print_trials(space: Any) -> None:
    """The trial table: one row per trial with the settings that vary, and the count."""
    from orchestrator.table import format_table

    trials = space.configs()
    columns = space.varying_keys()
    rows = [{"#": i, **t} for i, t in enumerate(trials)]
    fixed = {k: v for k, v in trials[0].items() if k not in columns} if trials else {}
    print(f"space {space.name}: {_count(len(trials), 'trial')}")
    if fixed:
        print("same in every trial: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    if columns:
        print(format_table(rows, ["#", *columns]))
    print(_count(len(trials), "trial"))


def _progress() -> Any:
    def report(index: int, count: int, arch: tuple[str, str, int, int], grids: int) -> None:
        report.counted = True  # type: ignore[attr-defined]
        model, backbone, size, classes = arch
        print(
            f"counting FLOPs of network {index}/{count}: {model}/{backbone} at {size}, "
            f"{classes} classes, {_count(grids, 'LRG')} ...",
            file=sys.stderr,
            flush=True,
        )

    report.counted = False  # type: ignore[attr-defined]
    return report


#: The compute table's columns.
COMPUTE_COLUMNS = (
    "trials",
    "model",
    "backbone",
    "dataset",
    "input_size",
    "lrg",
    "gflops",
    "train_images",
    "epochs",
    "eval_images",
    "evaluations",
    "pflops",
)


def print_compute(
    trials: Sequence[TrialConfig],
    computes: Sequence[Any],
    rating: tuple[float, float, str] | None,
    args: argparse.Namespace,
) -> None:
    """Rows of trials that cost the same, the total in PFLOPs and, with a rating, GPU-hours."""
    from orchestrator.compute import total
    from orchestrator.table import format_table

    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for index, (trial, compute) in enumerate(zip(trials, computes, strict=True)):
        row = _compute_row(trial, compute)
        key = tuple(row.values())
        groups.setdefault(key, {"indices": [], **row})["indices"].append(index)
    rows = [{"trials": _ranges(g.pop("indices")), **g} for g in groups.values()]
    print(
        "estimated compute per trial: forward GFLOPs of one image through the network it runs "
        "(unpruned: SFP keeps pruned filters in place), x3 per training image (forward + "
        "backward), x1 per evaluation image; evaluations = evaluation epochs + the initial "
        "spectrum pass"
    )
    print(format_table(rows, list(COMPUTE_COLUMNS)))
    train, evaluation, unknown = total(computes)
    known = len(trials) - unknown
    print(
        f"total: {_pflops(train + evaluation)} for {_count(known, 'trial')} (training "
        f"{_pflops(train)}, evaluation {_pflops(evaluation)})"
    )
    if unknown:
        print(
            f"{_count(unknown, 'trial')} left out: image or class count unknown (set "
            "train_length/eval_length and num_classes, or a data root on this machine)"
        )
    if args.search == "optuna" and args.num_samples is not None:
        print(f"--search optuna samples {args.num_samples} of these trials (plus references)")
    if rating is not None:
        print(_hours_line(train + evaluation, rating))
    else:
        print("GPU-hours: add --gpu NAME or --device-tflops T (and --utilisation U)")


def print_strategy(
    args: argparse.Namespace,
    trials: Sequence[TrialConfig],
    references: Sequence[TrialConfig],
    by_key: dict[str, Any],
    rating: tuple[float, float, str] | None,
) -> None:
    """How many trainings the strategy runs at least (its references), against the sweep."""
    from orchestrator.compute import total

    keys = {t.key for t in trials}
    added = sum(1 for r in references if r.key not in keys)
    ref_train, ref_eval, _ = total([by_key[r.key] for r in references])
    all_train, all_eval, _ = total([by_key[t.key] for t in trials])
    least, everything = ref_train + ref_eval, all_train + all_eval
    saved = len(trials) - len(references)
    share = f"{saved / len(trials):.0%}" if trials else "-"
    compute_share = f"{(everything - least) / everything:.0%}" if everything > 0 else "-"
    extra = f", {added} added at the native grid" if added else ""
    print(
        f"strategy {args.strategy}: trains at least {len(references)} of the {len(trials)} "
        f"trials (each group's reference{extra}), {_pflops(least)}; saves {saved} trainings "
        f"({share}) and {_pflops(everything - least)} ({compute_share}) against the exhaustive "
        "sweep"
    )
    if args.strategy == Strategy.ADAPTIVE:
        budget = f", at most {args.budget} per group" if args.budget is not None else ""
        print(
            "  then, phase by phase, the candidates likely to beat their group's best measured "
            f"FPI{budget}"
        )
    elif args.confirm:
        print("  plus, with --confirm, each truncation group's recommended LRG")
    if rating is not None:
        print("  " + _hours_line(least, rating, "the references"))


def _compute_row(trial: TrialConfig, compute: Any) -> dict[str, Any]:
    lrg: Any = trial.effective_lrg
    if trial.truncation == "posthoc" and not trial.is_native:
        lrg = f"{trial.effective_lrg} (trained {trial.native_lrg})"
    row: dict[str, Any] = {
        "model": trial.model,
        "backbone": trial.backbone,
        "dataset": trial.dataset,
        "input_size": trial.input_size,
        "lrg": lrg,
    }
    if compute is None:
        return {**row, **dict.fromkeys(COMPUTE_COLUMNS[6:])}
    return {
        **row,
        "gflops": compute.train_gflops,
        "train_images": compute.train_images,
        "epochs": compute.epochs,
        "eval_images": compute.eval_images,
        "evaluations": compute.evaluations + len(trial.eval_lrgs),
        "pflops": compute.pflops,
    }


def _hours_line(pflops: float, rating: tuple[float, float, str], what: str = "") -> str:
    from orchestrator.compute import gpu_hours
    from orchestrator.table import cell

    tflops, utilisation, label = rating
    hours = gpu_hours(pflops, tflops, utilisation)
    of = f" for {what}" if what else ""
    at = f" at {utilisation:.0%} utilisation" if utilisation != 1.0 else ""
    return f"GPU-hours{of}: {cell(hours)} ({_duration(hours)}) on {label}{at}"


def _duration(hours: float) -> str:
    seconds = hours * 3600.0
    if seconds < 60:
        return f"{seconds:.2g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if hours < 48:
        return f"{hours:.3g} h"
    return f"{hours / 24:.3g} days"


def _pflops(value: float) -> str:
    from orchestrator.table import cell

    return f"{value:,.0f} PFLOPs" if value >= 1e4 else f"{cell(value)} PFLOPs"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5``."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


__all__ = ["add_cost_flags", "check_cost_flags", "dry_run", "print_trials"]
