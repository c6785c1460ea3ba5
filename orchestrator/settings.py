"""The settings of one sweep as a typed dataclass (no Ray), saved beside Tune's state.

``spectral-sweep sweep`` builds a :class:`SweepSettings` from its flags (all checks happen
before Ray starts); :mod:`orchestrator.tune` turns it into a ``Tuner``; ``--resume`` reads it
back from ``<storage>/<name>/spectral_sweep.json``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from search_spaces import SearchSpace, space_from_dict
from trainables.errors import InputError
from trainables.run_schema import Role, Strategy

SearchName = Literal["grid", "optuna"]
SchedulerName = Literal["fifo", "asha"]

DEFAULT_STORAGE = "spectral_sweep_runs"
#: Written beside Tune's own state so ``--resume`` knows the space and the tracking settings.
SWEEP_FILE = "spectral_sweep.json"


@dataclass
class SweepSettings:
    """Everything ``spectral-sweep sweep`` decides; saved with the sweep for ``--resume``."""

    space: dict[str, Any]  # the space as plain data (SearchSpace.to_dict())
    name: str  # sweep name = Tune experiment name = MLflow experiment name
    storage: str = DEFAULT_STORAGE  # Tune storage path (shared by all nodes on a cluster)
    tracking_uri: str = ""  # MLflow tracking URI (resolved: flag, env, or sqlite in cwd)
    address: str | None = None  # None: embedded local Ray; "auto", "host:port" or "ray://..."
    search: SearchName = "grid"
    num_samples: int | None = None  # optuna: trials to sample (default: the grid's size)
    multi_objective: bool = False  # optuna: minimise gflops and maximise miou together
    scheduler: SchedulerName = "fifo"  # "asha": early stopping (asha_metric, max)
    asha_metric: str = "miou"  # the metric ASHA compares trials on (maximised)
    asha_grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    asha_reduction_factor: float = 3.0  # ASHA keeps 1 / factor of the trials at each rung
    tracking_flush_seconds: float = 120.0  # the end of a sweep waits this long for queued writes
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractional shares one GPU between trials
    max_concurrent: int | None = None  # None: as many as the resources allow
    max_failures: int = 1  # retries of a failed trial, each from its last checkpoint
    strategy: str = Strategy.EXHAUSTIVE  # every trial; Strategy.ESTIMATE: see below
    role: str = Role.TRIAL  # MLflow tag Tag.ROLE (trainables.run_schema.ROLES)
    estimator: str = "paper"  # estimate/adaptive: "paper" or an estimator.json from `analyze`
    estimator_from: list[str] = field(default_factory=list)  # fit on these experiments instead
    confirm: bool = False  # estimate: also train each group's recommended LRG
    max_drop: float | None = None  # estimate/adaptive: largest acceptable relative mIoU drop
    tolerance: float = 0.01  # adaptive: improvements smaller than this share are not worth it
    budget: int | None = None  # adaptive: trainings per group, the reference included
    stop_probability: float = 0.1  # adaptive: stop when no candidate is this likely to improve
    experiment: str = ""  # MLflow experiment when it differs from the name (a strategy's phase)
    seed: int = 0  # Optuna sampler seed
    verbose: int = 1  # Tune verbosity; 0 hides the progress table
    extra_tags: dict[str, str] = field(default_factory=dict)  # more MLflow tags on every run
    log_model: bool = False  # each finished trial's network as an MLflow model of its run
    system_metrics: bool = False  # MLflow's system metrics sampled in each trial
    optuna_storage: str = ""  # optuna: the study's storage URL ("": optuna.db beside tracking)
    study_name: str = ""  # optuna: the study's name in that storage (set when the sweep starts)

    def __post_init__(self) -> None:
        from orchestrator.uris import absolute_sqlite_uri

        self.tracking_uri = absolute_sqlite_uri(self.tracking_uri)  # saved: resumed elsewhere
        self.optuna_storage = absolute_sqlite_uri(self.optuna_storage)

    @property
    def mlflow_experiment(self) -> str:
        """The MLflow experiment the runs go to: ``experiment``, else the sweep name."""
        return self.experiment or self.name

    @property
    def experiment_path(self) -> Path:
        """``<storage>/<name>``: Tune's experiment directory."""
        return Path(self.storage).expanduser().resolve() / self.name

    def search_space(self) -> SearchSpace:
        """The validated space, built (and its trials expanded) once per distinct space."""
        return _space_of(json.dumps(self.space, sort_keys=True, default=str))


@functools.lru_cache(maxsize=8)
def _space_of(text: str) -> SearchSpace:
    """A space from its JSON text; cached, so the sweep, its checks and its strategy share one
    expansion (SearchSpace is immutable)."""
    data = json.loads(text)
    return space_from_dict(data, source=f"space {data.get('name')!r}")


@dataclass
class SweepOutcome:
    """What a finished (or interrupted) sweep left: trial counts and where things are.

    ``finished``: trials that reached their last epoch; ``stopped_early``: stopped by the
    scheduler (ASHA); ``errored``: failed for good; the rest did not end (an interrupt):
    ``--resume`` continues them. ``tracking_lost``: tracking writes that could not be made.
    """

    name: str
    path: Path
    tracking_uri: str
    total: int
    finished: int
    errored: int
    stopped_early: int = 0
    tracking_lost: list[str] = field(default_factory=list)
    results: Any = field(default=None, repr=False)  # Tune's ResultGrid of the sweep
    pareto: Any = field(default=None, repr=False)  # multi-objective: the front (a DataFrame)

    @property
    def unfinished(self) -> int:
        return self.total - self.finished - self.errored - self.stopped_early


def save_settings(settings: SweepSettings) -> Path:
    """Write ``spectral_sweep.json`` into the experiment directory, atomically (a temporary
    file renamed over it: a full disk leaves the old file or none, never half of one)."""
    path = settings.experiment_path / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_settings(experiment_path: Path) -> SweepSettings:
    """The settings a sweep was started with."""
    path = experiment_path / SWEEP_FILE
    if not path.exists():
        raise InputError(
            f"{experiment_path} has no {SWEEP_FILE}; it was not started by spectral-sweep"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path} cannot be read as a sweep's settings ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds no sweep settings (a JSON object was expected)")
    known = {f.name for f in fields(SweepSettings)}
    return SweepSettings(**{k: v for k, v in data.items() if k in known})
