"""``spectral-sweep demo``: the demo space end to end on this machine, nothing to set up.

Embedded defaults: local Ray with every CPU, an MLflow SQLite file ``mlflow.db`` and Tune
results in ``spectral_sweep_runs/`` under ``--dir`` (the working directory), synthetic data.
Running it again resumes (or reuses) the sweep of the same name. Each step is a small
function so later steps (the estimate strategy, a verdict) can be added to :func:`run`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

DEMO_SPACE = "demo"
STORAGE_DIR = "spectral_sweep_runs"


def register(sub: Any) -> None:
    """Add the ``demo`` parser."""
    p = sub.add_parser(
        "demo",
        help="run the demo sweep on synthetic data (local Ray, MLflow in ./mlflow.db)",
        description=(
            "Run the `demo` search space (both models, both synthetic data sets, LRG sizes, "
            "prune rates and annotation limits) on an embedded local Ray, tracked in an MLflow "
            "SQLite file; print how to open the MLflow UI on it. Re-running resumes."
        ),
    )
    p.add_argument("--dir", default=".", help="where mlflow.db and spectral_sweep_runs/ go")
    p.add_argument("--name", default=DEMO_SPACE, help="sweep / MLflow experiment name")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials running at once")
    p.add_argument("--quiet", action="store_true", help="no progress table")
    p.set_defaults(func=run)


def demo_locations(directory: Path) -> tuple[Path, str]:
    """``(storage path, tracking URI)`` of the demo under ``directory``."""
    from orchestrator.tracking import default_tracking_uri

    return directory / STORAGE_DIR, default_tracking_uri(directory)


def run_exhaustive(
    directory: Path,
    *,
    name: str = DEMO_SPACE,
    space: str = DEMO_SPACE,
    max_concurrent: int | None = None,
    verbose: int = 1,
) -> str:
    """Run (or resume) every trial of ``space`` as the sweep ``name``; returns the experiment.

    Strategy tag ``exhaustive``, role ``trial``. An existing sweep of that name is resumed:
    finished trials are not run again, so a completed demo returns at once.
    """
    from orchestrator.commands.sweep import TUNER_STATE_FILE
    from orchestrator.settings import SweepSettings
    from orchestrator.tracking import check_tracking_uri
    from orchestrator.tune import run_sweep
    from search_spaces import get_space

    storage, uri = demo_locations(directory)
    storage.mkdir(parents=True, exist_ok=True)
    check_tracking_uri(uri)
    settings = SweepSettings(
        space=get_space(space).to_dict(),
        name=name,
        storage=str(storage),
        tracking_uri=uri,
        max_concurrent=max_concurrent,
        verbose=verbose,
    )
    resume = (settings.experiment_path / TUNER_STATE_FILE).exists()
    if resume:
        print(f"resuming sweep {name!r} in {settings.experiment_path}")
    outcome = run_sweep(settings, resume=resume)
    print(
        f"exhaustive sweep {name!r}: {outcome.finished} finished, {outcome.errored} failed, "
        f"{outcome.unfinished} unfinished of {outcome.total} trials"
    )
    return name


def print_next_steps(directory: Path, experiment: str) -> None:
    """Where the results are and how to look at them."""
    from orchestrator.tracking import ui_command

    _, uri = demo_locations(directory)
    print(f"MLflow experiment {experiment!r} in {uri}")
    print(f"list the runs:  spectral-sweep runs --experiment {experiment} --tracking-uri {uri}")
    print(f"open the UI:    {ui_command(uri)}  (then http://127.0.0.1:5000)")


def run(args: argparse.Namespace) -> int:
    """The demo: the exhaustive sweep, then the pointers to its results."""
    directory = Path(args.dir).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    experiment = run_exhaustive(
        directory,
        name=args.name,
        max_concurrent=args.max_concurrent,
        verbose=0 if args.quiet else 1,
    )
    print(f"demo finished in {time.perf_counter() - began:.0f} s")
    print_next_steps(directory, experiment)
    return 0
