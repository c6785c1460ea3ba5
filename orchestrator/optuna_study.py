"""Optuna done properly: the study stored beside the tracking store, and the Pareto front of a
multi-objective sweep printed, logged and plotted.

Storage: ``--optuna-storage URL``, else ``optuna.db`` in the folder of a ``sqlite:///`` tracking
store (else in the sweep's directory), so ``optuna-dashboard sqlite:///optuna.db`` opens the
study next to ``mlflow ui``. The study is named after the sweep (``-2``, ``-3``, ... when that
name is taken) and the name is saved with the sweep, so ``--resume`` continues the same study.
Only the driver writes to it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.mlflow_runs import _locked, _sqlite_file
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import Artifact, Metric, Tag, run_name

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.settings import SweepSettings

log = logging.getLogger(__name__)

#: The study database's file name beside the tracking store.
OPTUNA_DB = "optuna.db"


def default_storage(settings: SweepSettings) -> str:
    """``sqlite:///<tracking folder>/optuna.db``, or the sweep directory's for a server."""
    database = _sqlite_file(settings.tracking_uri)
    folder = database.parent if database is not None else settings.experiment_path
    return f"sqlite:///{(folder / OPTUNA_DB).resolve()}"


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url``; a SQLite file's schema is made under a file lock (two
    sweeps starting at once), and a bad URL is one InputError."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    database = _sqlite_file(url)
    if url.startswith("sqlite:///") and database is None:
        raise InputError(f"--optuna-storage {url!r}: its folder does not exist")
    lock = (
        _locked(database.with_name(database.name + ".lock"))
        if database is not None
        else contextlib.nullcontext()
    )
    try:
        with lock:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": _connect(url)})
    except Exception as err:
        raise InputError(f"--optuna-storage {url!r} cannot be opened: {err}") from None


def _connect(url: str) -> dict[str, Any]:
    return {"timeout": 30} if url.startswith("sqlite") else {}


def prepare_study(settings: SweepSettings) -> None:
    """Fix the new sweep's storage URL and a study name free in it (saved with the sweep)."""
    import optuna

    if settings.search != "optuna" or settings.study_name:
        return  # a grid, or a sweep restarted in place (``tune_state_saved``) keeps its study
    settings.optuna_storage = settings.optuna_storage or default_storage(settings)
    if settings.optuna_storage.startswith("sqlite:///"):
        Path(settings.optuna_storage.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    storage = open_storage(settings.optuna_storage)
    taken = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    name, n = settings.name, 1
    while name in taken:
        n += 1
        name = f"{settings.name}-{n}"
    settings.study_name = name


def optuna_search(settings: SweepSettings, space: Any) -> Any:
    """Tune's OptunaSearch on the stored study (one or two objectives)."""
    from ray.tune.search.optuna import OptunaSearch

    metric: Any = [Metric.GFLOPS, Metric.MIOU] if settings.multi_objective else Metric.MIOU
    mode: Any = ["min", "max"] if settings.multi_objective else "max"
    storage = open_storage(settings.optuna_storage) if settings.optuna_storage else None
    return OptunaSearch(
        space=space,
        metric=metric,
        mode=mode,
        seed=settings.seed,
        storage=storage,
        study_name=settings.study_name or None,
    )


# --------------------------------------------------------------------- the Pareto front


def sweep_points(results: Any) -> pd.DataFrame:
    """(data set, settings, GFLOPs, mIoU, run name, trial id) of each finished trial of a
    ResultGrid: failed, stopped-early and unfinished trials measured no configuration."""
    import pandas as pd

    rows = []
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None or not metrics.get("final"):
            continue
        if Metric.GFLOPS not in metrics or Metric.MIOU not in metrics:
            continue
        cfg = TrialConfig.from_dict(result.config)
        rows.append(
            {
                "dataset": cfg.dataset,
                "model": cfg.model,
                "lrg": cfg.effective_lrg,
                "prune_rate": cfg.prune_rate,
                "annotation_nu_max": cfg.annotation_nu_max,
                "gflops": float(metrics[Metric.GFLOPS]),
                "miou": float(metrics[Metric.MIOU]),
                "fpi": float(metrics.get(Metric.FPI, float("nan"))),
                "run_name": run_name(cfg),
                "trial_id": str(metrics.get("trial_id") or Path(result.path).name),
            }
        )
    return pd.DataFrame(rows)


def record_front(settings: SweepSettings, parent: str | None, points: pd.DataFrame) -> list[str]:
    """The front of ``points`` on the sweep's parent run (``pareto_front.csv`` and ``.png``)
    and tag ``spectral_sweep.pareto=true`` on its trial runs; returns what could not be
    written."""
    import tempfile

    from analysis.pareto import front_table, pareto_front, plot_pareto
    from orchestrator import store

    front = pareto_front(points)
    try:
        client = store.make_client(settings.tracking_uri)
        experiment_id = store.ensure_experiment(client, settings.mlflow_experiment)
        for trial_id in front["trial_id"]:
            run = store.find_trial_run(client, experiment_id, str(trial_id))
            if run is not None:
                store.set_tags(client, run.info.run_id, {Tag.PARETO: "true"})
        if parent is None:
            return []
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / Artifact.PARETO_CSV
            front_table(front).to_csv(csv, index=False)
            png = plot_pareto(points, Path(tmp) / Artifact.PARETO_PNG)
            for path in (csv, png):
                if path is not None:
                    store.retry_locked(lambda p=path: client.log_artifact(parent, str(p)))  # type: ignore[misc]
    except Exception as err:
        return [f"record the Pareto front ({err})"]
    return []


__all__ = [
    "OPTUNA_DB",
    "default_storage",
    "open_storage",
    "optuna_search",
    "prepare_study",
    "record_front",
    "sweep_points",
]
