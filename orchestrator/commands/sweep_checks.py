"""The ``sweep`` flags' own checks: ranges, and combinations that make sense (one line, exit 2,
before anything starts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainables.errors import InputError
from trainables.run_schema import Strategy


def check_numbers(args: argparse.Namespace) -> None:
    """Resource and count flags in range, and flag combinations that make sense."""
    if args.cpus_per_trial <= 0:
        raise InputError(f"--cpus-per-trial {args.cpus_per_trial} must be > 0")
    if args.gpus_per_trial < 0:
        raise InputError(f"--gpus-per-trial {args.gpus_per_trial} must be >= 0")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise InputError(f"--max-concurrent {args.max_concurrent} must be >= 1")
    if args.max_failures < -1:
        raise InputError(f"--max-failures {args.max_failures} must be >= -1")
    if args.search != "optuna":
        if args.num_samples is not None:
            raise InputError("--num-samples needs --search optuna (a grid runs every trial once)")
        if args.multi_objective:
            raise InputError("--multi-objective needs --search optuna")
    if args.scheduler != "asha":
        asha_only = {
            "--asha-metric": args.asha_metric != "miou",
            "--asha-grace-period": args.asha_grace_period != 1,
            "--asha-reduction-factor": args.asha_reduction_factor != 3.0,
        }
        for flag, given in asha_only.items():
            if given:
                raise InputError(f"{flag} needs --scheduler asha")
    if args.name is not None and not args.name.strip():
        raise InputError(
            "--name '' is empty; give a sweep name, or leave the flag out for the space's"
        )
    if not args.tracking_flush_seconds >= 0:
        raise InputError(f"--tracking-flush-seconds {args.tracking_flush_seconds} must be >= 0")
    if args.asha_grace_period < 1:
        raise InputError(f"--asha-grace-period {args.asha_grace_period} must be >= 1")
    if not args.asha_reduction_factor > 1:
        raise InputError(f"--asha-reduction-factor {args.asha_reduction_factor} must be > 1")
    if args.num_samples is not None and args.num_samples < 1:
        raise InputError(f"--num-samples {args.num_samples} must be >= 1")
    if args.strategy == Strategy.PAPER:
        args.strategy = Strategy.ESTIMATE  # one method, two names
    if args.strategy == Strategy.EXHAUSTIVE:
        strategy_only = {
            "--confirm": args.confirm,
            "--max-drop": args.max_drop is not None,
            "--estimator": args.estimator != "paper",
            "--estimator-from": bool(args.estimator_from),
        }
        for flag, given in strategy_only.items():
            if given:
                raise InputError(f"{flag} needs --strategy estimate or adaptive")
    if args.strategy != Strategy.ADAPTIVE:
        from orchestrator.commands.backtest import check_adaptive_only

        check_adaptive_only(args)
    if args.strategy == Strategy.ADAPTIVE and args.confirm:
        raise InputError("--confirm goes with --strategy estimate (adaptive picks are trained)")
    if args.estimator_from and args.estimator != "paper":
        raise InputError("give --estimator or --estimator-from, not both")
    if args.optuna_storage and args.search != "optuna":
        raise InputError("--optuna-storage needs --search optuna")
    if args.optuna_storage and "://" not in args.optuna_storage:
        raise InputError(
            f"--optuna-storage {args.optuna_storage!r} is not a database URL "
            "(e.g. sqlite:///optuna.db or postgresql://HOST/DB)"
        )
    if args.optuna_storage:
        check_optuna_storage(args.optuna_storage)
    if args.strategy in (Strategy.ESTIMATE, Strategy.ADAPTIVE):  # the dry run checks them too
        from orchestrator.commands.backtest import strategy_options

        strategy_options(args)


def check_optuna_storage(url: str) -> None:
    """A study database URL whose driver exists, and for SQLite a file that can be one (its
    folder exists; no directory, no file of another kind), before Ray starts."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from orchestrator.uris import is_sqlite_file

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError, ImportError) as err:
        reason = str(err).splitlines()[0]
        raise InputError(
            f"--optuna-storage {url!r} is not a usable database URL ({reason})"
        ) from None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    path = Path(parsed.database).expanduser()
    if not path.parent.is_dir():
        raise InputError(f"--optuna-storage {url!r}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"--optuna-storage {url!r}: {path} is a directory, not a database file")
    if path.is_file() and path.stat().st_size > 0 and not is_sqlite_file(path):
        raise InputError(f"--optuna-storage {url!r}: {path} is not an SQLite database")


__all__ = ["check_numbers"]
