"""``spectral-sweep sweep``: run a search space as a Ray Tune sweep, tracked in MLflow.

All input is checked before Ray starts: the flags here, the rest (space, every trial's settings,
data roots, storage, tracking URI, Ray address) by :mod:`orchestrator.preflight`; ``--dry-run``
prints the trials without importing Ray.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.commands import (
    add_estimator_from,
    add_max_drop,
    add_tracking_uri,
    parse_experiments,
)
from orchestrator.commands.backtest import add_strategy_flags
from orchestrator.commands.dry_run import add_cost_flags, check_cost_flags, dry_run
from orchestrator.commands.sweep_checks import check_numbers
from orchestrator.preflight import check_storage, sweep_exists
from orchestrator.settings import DEFAULT_STORAGE
from trainables.errors import InputError
from trainables.run_schema import STRATEGIES, Metric, Strategy

#: Metrics ASHA may compare trials on (all maximised).
ASHA_METRICS: tuple[str, ...] = (Metric.MIOU, Metric.BOUNDARY_IOU, Metric.PIXEL_ACC)

if TYPE_CHECKING:
    from orchestrator.settings import SweepSettings


def register(sub: Any) -> None:
    """Add the ``sweep`` parser (``orchestrator.commands.sweep_config`` builds it alone too)."""
    p = sub.add_parser(
        "sweep",
        help="run a search space as a Ray Tune sweep (MLflow tracking)",
        description=(
            "Run every trial of a search space (grid) or a sample of it (--search optuna) on Ray "
            "Tune; each trial becomes an MLflow run. Without --address, Ray runs embedded on this "
            "machine; with --address auto (after `ray start --head`) or ray://HOST:PORT it uses "
            "a cluster, whose --storage must be a path every node shares."
        ),
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--space", metavar="NAME", help="a built-in space (see `spaces`)")
    source.add_argument("--space-file", metavar="FILE", help="a YAML/TOML space file")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials and the sweep's estimated compute, and exit (no Ray)",
    )
    p.add_argument("--name", help="sweep name = MLflow experiment (default: the space name)")
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Tune storage path for results and checkpoints (default: ./spectral_sweep_runs; "
        "on a cluster of several machines a directory every node mounts, e.g. NFS)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS, else an "
        "embedded local Ray)",
    )
    add_tracking_uri(p)
    p.add_argument("--search", choices=("grid", "optuna"), default="grid")
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="optuna: trials to sample (default: the space's size)",
    )
    p.add_argument(
        "--multi-objective",
        action="store_true",
        help="optuna: minimise gflops and maximise miou together (Pareto front)",
    )
    p.add_argument("--seed", type=int, default=0, help="optuna sampler seed")
    p.add_argument(
        "--scheduler",
        choices=("fifo", "asha"),
        default="fifo",
        help="asha: stop weak trials early (their runs are tagged stopped_early and left out of "
        "analyze, backtest and estimator fits)",
    )
    p.add_argument(
        "--asha-metric",
        choices=ASHA_METRICS,
        default="miou",
        help="asha: the metric trials are compared on, maximised (default miou)",
    )
    p.add_argument(
        "--asha-grace-period",
        type=int,
        default=1,
        metavar="N",
        help="asha: evaluations every trial runs before it may be stopped (default 1)",
    )
    p.add_argument(
        "--asha-reduction-factor",
        type=float,
        default=3.0,
        metavar="F",
        help="asha: keep 1/F of the trials at each rung (default 3)",
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional allowed, e.g. 0.5")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials running at once")
    p.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="retries of a failed trial, each from its last checkpoint (default 1; -1: forever)",
    )
    p.add_argument(
        "--tracking-flush-seconds",
        type=float,
        default=120.0,
        metavar="S",
        help="at the end, wait this long for tracking writes queued during a store outage "
        "(default 120); what is still unwritten is reported (exit 1) and --resume repairs it",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep --name (or the space's name) in --storage",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a trial setting for every trial, e.g. --set epochs=1 (repeatable)",
    )
    p.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="DATASET=PATH",
        help="where a real data set lives, e.g. --data-root voc=/data/VOCdevkit (repeatable)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=Strategy.EXHAUSTIVE,
        help="exhaustive: train every trial; estimate (= paper): train one reference per group "
        "and predict the rest with --estimator (recorded in MLflow as prediction runs); "
        "adaptive: after the references, train in phases what is likely to beat the best "
        "measured FPI (see `backtest`)",
    )
    p.add_argument(
        "--estimator",
        default="paper",
        metavar="FILE|paper",
        help="estimate/adaptive: estimator.json from `analyze`, or 'paper' (0.6725 R_ce + 0.0022)",
    )
    add_estimator_from(p)
    add_strategy_flags(p, max_drop=False)
    p.add_argument(
        "--confirm",
        action="store_true",
        help="estimate: also train each group's recommended LRG and log it beside its prediction",
    )
    add_max_drop(p, "estimate: ")
    p.add_argument(
        "--optuna-storage",
        default="",
        metavar="URL",
        help="optuna: where the study is stored (default: sqlite optuna.db beside a sqlite "
        "tracking store, else in the sweep's directory; `optuna-dashboard URL` opens it)",
    )
    p.add_argument(
        "--log-model",
        action="store_true",
        help="log each finished trial's network as an MLflow model of its run (off: sizes)",
    )
    p.add_argument(
        "--system-metrics",
        action="store_true",
        help="MLflow's system metrics (CPU, memory, disk, network, GPU) sampled in each trial",
    )
    p.add_argument("--quiet", action="store_true", help="no progress table")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML file of sweep settings (any flag's name as a key, e.g. search: optuna, "
        "cpus_per_trial: 2, set: {epochs: 1}); flags given on the command line override it",
    )
    add_cost_flags(p)
    p.set_defaults(func=run)


# --------------------------------------------------------------------- parsing the flags


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed item is an InputError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def load_space(args: argparse.Namespace) -> Any:
    """The space from --space/--space-file with --set and --data-root applied (validated)."""
    from search_spaces import SearchSpace, resolve_space, space_from_dict

    given = getattr(args, "space_object", None)
    if given is None:
        space = resolve_space(args.space, args.space_file)
    elif isinstance(given, SearchSpace):
        space = given
    else:
        space = space_from_dict(given, source="the given space")
    return with_flags(space, args)


def with_flags(space: Any, args: argparse.Namespace) -> Any:
    """``space`` with ``--set`` and ``--data-root`` applied."""
    overrides = parse_pairs(args.set, "--set")
    if overrides:
        space = space.with_overrides(overrides)
    roots = parse_pairs(args.data_root, "--data-root")
    if roots:
        space = space.with_data_roots({k: str(Path(v).expanduser()) for k, v in roots.items()})
    return space


def has_space(args: argparse.Namespace) -> bool:
    """Whether a space was given: a name, a file, or (config file, Python API) the space."""
    given = (args.space, args.space_file, getattr(args, "space_object", None))
    return any(v is not None for v in given)


def settings_from_args(args: argparse.Namespace) -> tuple[SweepSettings, bool]:
    """Validated :class:`~orchestrator.settings.SweepSettings` and whether to resume (no Ray)."""
    from orchestrator.preflight import check_new_sweep

    check_numbers(args)
    storage = check_storage(args.storage)
    if args.resume:
        return resume_settings(args, storage), True
    settings = new_settings(args, storage)
    check_new_sweep(settings)
    return settings, False


def new_settings(args: argparse.Namespace, storage: Path) -> SweepSettings:
    """The settings of a new sweep from the flags (the space loaded and validated; not yet
    the checks that look at the cluster and the tracking store)."""
    from orchestrator.settings import SweepSettings
    from orchestrator.uris import resolve_tracking_uri

    if not has_space(args):
        raise InputError("give --space NAME or --space-file FILE (see `spectral-sweep spaces`)")
    space = load_space(args)
    return SweepSettings(
        space=space.to_dict(),
        name=args.name or space.name,
        storage=str(storage),
        tracking_uri=resolve_tracking_uri(args.tracking_uri),
        address=args.address or os.environ.get("RAY_ADDRESS") or None,
        search=args.search,
        num_samples=args.num_samples,
        multi_objective=args.multi_objective,
        scheduler=args.scheduler,
        asha_metric=args.asha_metric,
        asha_grace_period=args.asha_grace_period,
        asha_reduction_factor=args.asha_reduction_factor,
        tracking_flush_seconds=args.tracking_flush_seconds,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        max_failures=args.max_failures,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
        strategy=args.strategy,
        estimator=args.estimator,
        estimator_from=parse_experiments(args.estimator_from),
        confirm=args.confirm,
        max_drop=args.max_drop,
        tolerance=args.tolerance,
        budget=args.budget,
        stop_probability=args.stop_probability,
        log_model=args.log_model,
        system_metrics=args.system_metrics,
        optuna_storage=args.optuna_storage,
    )


def check_resume_flags(args: argparse.Namespace, saved: SweepSettings) -> None:
    """A resumed sweep runs on its saved settings: flags that would change them are refused
    (before: ignored without a word); flags that repeat them (a ``--config`` file resumed
    with) are fine."""
    changes = {
        "--set/--data-root": _changes_space(args, saved),
        # a flag at its default was not given: the saved value stands
        "--search": args.search not in ("grid", saved.search),
        "--num-samples": args.num_samples not in (None, saved.num_samples),
        "--scheduler": args.scheduler not in ("fifo", saved.scheduler),
        "--strategy": args.strategy not in (Strategy.EXHAUSTIVE, saved.strategy),
    }
    given = [flag for flag, changed in changes.items() if changed]
    if given:
        raise InputError(
            f"--resume continues sweep {saved.name!r} with its saved settings; drop "
            f"{', '.join(given)} (or start a new sweep with another --name)"
        )


def _changes_space(args: argparse.Namespace, saved: SweepSettings) -> bool:
    """Whether ``--set`` / ``--data-root`` would change the saved sweep's trials."""
    if not (args.set or args.data_root):
        return False
    before = saved.search_space()
    return bool(with_flags(before, args).to_dict() != before.to_dict())


def resume_settings(args: argparse.Namespace, storage: Path) -> SweepSettings:
    """The saved settings of the sweep to resume; the directory must hold one."""
    name = args.name or args.space
    if name is None and args.space_file is not None:
        from search_spaces import load_space_file

        name = load_space_file(args.space_file).name
    if name is None:
        raise InputError("--resume needs --name (or --space) of the sweep to continue")
    from orchestrator.preflight import check_name

    check_name(name)  # one directory below --storage, as a new sweep's name
    path = storage / name
    if not sweep_exists(path):
        raise InputError(f"--resume: no sweep to resume at {path}")
    from orchestrator.preflight import check_resumed_sweep
    from orchestrator.settings import load_settings

    settings = load_settings(path)
    check_resume_flags(args, settings)
    from orchestrator.uris import absolute_sqlite_uri

    given = absolute_sqlite_uri(args.tracking_uri) if args.tracking_uri else None
    if given and given != settings.tracking_uri:
        raise InputError(
            f"--resume keeps the sweep's tracking URI {settings.tracking_uri!r}; drop "
            "--tracking-uri or pass that one"
        )
    if args.address is not None:
        settings.address = args.address
    settings.verbose = 0 if args.quiet else settings.verbose
    check_resumed_sweep(settings)
    return settings


# --------------------------------------------------------------------- output


def run(args: argparse.Namespace) -> int:
    """Validate everything, then dry-run (the trials and their estimated compute) or sweep."""
    if args.config is not None:
        from orchestrator.commands.sweep_config import load_config, sweep_namespace

        argv = list(getattr(args, "argv", []))
        argv = argv[argv.index("sweep") + 1 :] if "sweep" in argv else argv
        args = sweep_namespace(load_config(args.config), argv, f"--config {args.config}")
    check_cost_flags(args)  # cost flags go with --dry-run only
    if args.dry_run:
        if args.resume:
            raise InputError("--dry-run and --resume do not go together")
        check_numbers(args)
        from orchestrator.preflight import check_offline
        from orchestrator.uris import check_tracking_uri

        settings = new_settings(args, check_storage(args.storage))
        check_offline(settings)  # what the sweep checks before Ray, less cluster and store
        check_tracking_uri(settings.tracking_uri, probe_server=False)
        return dry_run(args, settings.search_space())
    from orchestrator.commands.outcomes import print_adaptive, print_estimate

    settings, resume = settings_from_args(args)
    if settings.strategy == Strategy.ADAPTIVE:
        from orchestrator.adaptive import run_adaptive

        return print_adaptive(run_adaptive(settings, resume=resume), settings)
    if settings.strategy == Strategy.ESTIMATE:
        from orchestrator.strategy import run_estimate

        estimate = run_estimate(settings, resume=resume)
        return print_estimate(estimate, settings)
    from orchestrator.tune import run_sweep

    outcome = run_sweep(settings, resume=resume)
    from orchestrator.commands.outcomes import print_outcome

    return print_outcome(outcome, settings)
