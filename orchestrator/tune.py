"""A search space -> a Ray Tune sweep: trainable, search, scheduler, resources, MLflow, resume.

This module imports Ray at the top; the CLI imports it only inside the commands that run sweeps,
so ``spectral-sweep --help``, ``spaces`` and ``sweep --dry-run`` never load Ray.

- :func:`spectral_sweep_trial` is the function trainable: it turns Tune's config into a trial
  (``trainables.trial.run_trial``) and forwards each evaluation with ``tune.report``, the
  checkpoint directory holding ``checkpoint.pt``, ``spectrum.csv`` and ``per_class_iou.json``.
- :class:`MlflowTrackingCallback` runs in the driver and is the only MLflow writer.
- :func:`run_sweep` checks the inputs, starts (or joins) Ray, builds or restores the
  ``Tuner`` and fits it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from orchestrator import tracking
from orchestrator.settings import SweepOutcome, SweepSettings, save_settings
from search_spaces import SearchSpace, space_from_dict
from trainables.errors import InputError

log = logging.getLogger(__name__)

SEARCHES: tuple[str, ...] = ("grid", "optuna")
SCHEDULERS: tuple[str, ...] = ("fifo", "asha")

#: Result keys that are not trial metrics (Tune's bookkeeping, and our node labels).
NON_METRIC_KEYS = frozenset(
    {*AUTO_RESULT_KEYS, "done", "trial_id", "experiment_tag", "should_checkpoint", "node_id"}
)
#: Columns of the terminal progress table: metric -> header.
PROGRESS_METRICS = {
    "epoch": "epoch",
    "loss": "loss",
    "miou": "mIoU",
    "gflops": "GFLOPs",
    "fpi": "FPI",
    "r_ce_lrg": "R_ce(lrg)",
}


# --------------------------------------------------------------------- the trainable


def spectral_sweep_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable: one ``run_trial`` whose reports go to ``tune.report``.

    Resumes from Tune's checkpoint when there is one (a retried or restored trial), so a
    failure costs at most one evaluation interval. Each result carries ``node_id`` (the Ray
    node that ran it) for the MLflow tags.
    """
    from trainables.trial import TrialReport, run_trial

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # per-report INFO
    node_id = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory(prefix="spectral-sweep-") as tmp:
        local = Path(tmp) / "checkpoint"
        restored = tune.get_checkpoint()
        if restored is not None:
            restored.to_directory(str(local))

        def forward(report: TrialReport) -> None:
            metrics: dict[str, Any] = dict(report.metrics)
            metrics["node_id"] = node_id
            checkpoint = None
            if report.checkpoint_path is not None:
                tracking.write_trial_artifacts(
                    report.checkpoint_path, report.spectrum, report.per_class_iou
                )
                checkpoint = tune.Checkpoint.from_directory(str(report.checkpoint_path))
            tune.report(metrics, checkpoint=checkpoint)

        run_trial(config, report=forward, checkpoint_dir=local, resume=True)


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def make_trainable(cpus: float, gpus: float) -> Any:
    """The trainable with its per-trial resources (fractional GPUs allowed)."""
    return tune.with_resources(spectral_sweep_trial, {"cpu": cpus, "gpu": gpus})


# --------------------------------------------------------------------- MLflow callback


class MlflowTrackingCallback(tune.Callback):
    """Driver-side adapter from Tune's trial events to :mod:`orchestrator.tracking`.

    One run per trial (found again by its trial-id tag, so a resumed or retried trial keeps
    its run and a finished run is never re-created); metrics per result with step = epoch;
    final artifacts from the trial's last checkpoint; FAILED with the error text on error.
    Tracking problems are logged, not raised: a tracking hiccup must not kill a sweep.
    """

    def __init__(self, tracking_uri: str, experiment: str, tags: Mapping[str, str]) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.tags = dict(tags)
        self._reset()

    def _reset(self) -> None:
        self._client: Any = None
        self._experiment_id: str | None = None
        self._runs: dict[str, str | None] = {}  # trial id -> run id (None: already finished)
        self._closed: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: no live client
        return {"tracking_uri": self.tracking_uri, "experiment": self.experiment, "tags": self.tags}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # -------------------------------------------------------------- plumbing

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = tracking.make_client(self.tracking_uri)
            self._experiment_id = tracking.ensure_experiment(
                self._client, self.experiment, self.tracking_uri
            )
        return self._client

    def _run_id(self, trial: Any) -> str | None:
        """The trial's open run (created on first sight); None when it already FINISHED."""
        trial_id = str(trial.trial_id)
        if trial_id not in self._runs:
            client = self.client
            assert self._experiment_id is not None
            run_id, finished = tracking.start_trial_run(
                client, self._experiment_id, trial_id, trial.config, self.tags
            )
            self._runs[trial_id] = None if finished else run_id
        return self._runs[trial_id]

    def _safely(self, what: str, trial: Any, fn: Any) -> None:
        try:
            fn()
        except Exception as err:
            log.warning("MLflow %s for trial %s failed: %s", what, trial.trial_id, err)

    # -------------------------------------------------------------- Tune hooks

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        try:
            _ = self.client
        except Exception as err:
            log.warning("MLflow at %s is not usable: %s", self.tracking_uri, err)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._closed.discard(str(trial.trial_id))
        self._safely("run start", trial, lambda: self._run_id(trial))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        def log_result() -> None:
            run_id = self._run_id(trial)
            if run_id is None:
                return
            metrics = tracking.numeric_metrics(result, exclude=NON_METRIC_KEYS)
            if not metrics:
                return
            step = int(result.get("epoch", result.get("training_iteration", 1) - 1))
            tracking.log_metrics(self.client, run_id, metrics, step=step)
            node = {
                tracking.TAG_NODE_ID: result.get("node_id"),
                tracking.TAG_NODE_IP: result.get("node_ip"),
            }
            tracking.set_tags(self.client, run_id, {k: v for k, v in node.items() if v})

        self._safely("metrics", trial, log_result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._safely("run end", trial, lambda: self._close(trial, "FINISHED"))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._safely("run failure", trial, lambda: self._close(trial, "FAILED", _error_text(trial)))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Runs of trials an interrupted sweep left behind are KILLED (``--resume`` reopens them)."""
        for trial in trials:
            trial_id = str(trial.trial_id)
            run_id = self._runs.get(trial_id)
            if run_id is not None and trial_id not in self._closed:
                self._safely(
                    "run stop",
                    trial,
                    lambda run_id=run_id: tracking.end_trial_run(self.client, run_id, "KILLED"),
                )

    def _close(self, trial: Any, status: str, error: str | None = None) -> None:
        trial_id = str(trial.trial_id)
        run_id = self._run_id(trial)
        if run_id is None or trial_id in self._closed:
            return
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                tracking.log_trial_artifacts(self.client, run_id, directory)
        tracking.end_trial_run(self.client, run_id, status=status, error=error)
        self._closed.add(trial_id)


def _error_text(trial: Any) -> str:
    text = None
    try:
        text = trial.get_error()
    except Exception:  # storage gone: fall back to the local error file
        text = None
    if not text and trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    return str(text or "trial failed (no error text recorded)")


# --------------------------------------------------------------------- Ray


def init_ray(address: str | None) -> None:
    """Join the Ray the caller already started, the cluster at ``address``, or start one here."""
    if ray.is_initialized():
        return
    try:
        if address is None:
            ray.init(
                address="local",  # embedded, even where RAY_ADDRESS names a cluster
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=True,
            )
        else:
            ray.init(address=address)
    except ConnectionError as err:
        raise InputError(f"cannot connect to Ray at {address!r}: {err}") from None


def check_cluster(settings: SweepSettings) -> None:
    """Before any trial: the cluster can hold one trial's resources, and a cluster of several
    machines has a tracking server (a SQLite file lives on one machine: analysis, the UI and a
    resumed driver elsewhere could not read it)."""
    available = ray.cluster_resources()
    needs = {"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}
    for name, amount in needs.items():
        largest = max((n["Resources"].get(name, 0.0) for n in ray.nodes() if n["Alive"]), default=0)
        if amount > largest:
            flag = f"--{name.lower()}s-per-trial"
            raise InputError(
                f"{flag} {amount:g}: no Ray node has that many {name}s (largest node "
                f"{largest:g}, cluster {available.get(name, 0.0):g}); a trial could never start"
            )
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    if len(hosts) > 1 and tracking.is_local_uri(settings.tracking_uri):
        raise InputError(
            f"the Ray cluster spans {len(hosts)} machines, so {settings.tracking_uri} (a file on "
            "one of them) cannot be the tracking store; pass --tracking-uri http://HOST:PORT "
            "of an `mlflow server`"
        )
    if len(hosts) > 1 and "://" not in settings.storage:
        log.warning(
            "--storage %s must be a path every node of the %d-machine cluster shares (NFS)",
            settings.storage,
            len(hosts),
        )


# --------------------------------------------------------------------- Tuner


@dataclass(frozen=True)
class OptunaSpace:
    """Optuna define-by-run space: one categorical per axis, fixed/derived settings as constants."""

    space: dict[str, Any]

    def __call__(self, trial: Any) -> dict[str, Any]:
        space = space_from_dict(self.space, source="optuna space")
        values = {
            axis: trial.suggest_categorical(axis, choices) for axis, choices in space.axes().items()
        }
        return space.resolve(values)


def complete_configs(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every trial every key any trial sets (missing ones at the TrialConfig default).

    Needed for ``points_to_evaluate``: a key a point leaves out would be *sampled* from the
    param space, so e.g. an LRG-sweep trial could get a random annotation limit.
    """
    import dataclasses

    from trainables.config import TrialConfig

    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(TrialConfig):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    keys: list[str] = []
    for config in configs:
        keys.extend(k for k in config if k not in keys)
    return [{k: config.get(k, defaults.get(k)) for k in keys} for config in configs]


def grid_param_space(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every key of the trials as a Tune domain (constant, or a choice of its values).

    The trials themselves come from ``BasicVariantGenerator(points_to_evaluate=configs)``,
    which needs every key in the param space; Tune's config is then the flat trial dict.
    """
    keys: list[str] = []
    for config in configs:
        keys.extend(k for k in config if k not in keys)
    out: dict[str, Any] = {}
    for key in keys:
        values: list[Any] = []
        for config in configs:
            value = config.get(key)
            if not any(_same_repr(value, v) for v in values):
                values.append(value)
        out[key] = values[0] if len(values) == 1 else tune.choice(values)
    return out


def _same_repr(a: Any, b: Any) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


def max_epochs(configs: list[dict[str, Any]]) -> int:
    """The most evaluations any trial reports (ASHA's ``max_t``)."""
    from trainables.config import TrialConfig

    return max((TrialConfig.from_dict(c).epochs for c in configs), default=1)


def progress_reporter(space: SearchSpace) -> Any:
    """Tune's CLIReporter with the space's varying settings and the key metrics."""
    columns = [k for k in space.varying_keys() if k != "extra"][:8]
    return tune.CLIReporter(
        parameter_columns={k: k for k in columns},
        metric_columns=PROGRESS_METRICS,
        max_report_frequency=10,
        max_column_length=16,
        print_intermediate_tables=True,
    )


def build_tuner(settings: SweepSettings) -> tune.Tuner:
    """A new ``Tuner`` for the settings (grid or Optuna, FIFO or ASHA, MLflow callback)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space = settings.search_space()
    configs = space.configs()  # the Ray edge: Tune's param_space takes plain dicts
    trainable = make_trainable(settings.cpus_per_trial, settings.gpus_per_trial)
    concurrency = settings.max_concurrent or 0
    if settings.search == "grid":
        configs = complete_configs(configs)
        param_space = grid_param_space(configs)
        search_alg: Any = BasicVariantGenerator(
            points_to_evaluate=configs, max_concurrent=concurrency
        )
        num_samples = len(configs)
        max_concurrent_trials = None
    else:
        from ray.tune.search.optuna import OptunaSearch

        metric: Any = ["gflops", "miou"] if settings.multi_objective else "miou"
        mode: Any = ["min", "max"] if settings.multi_objective else "max"
        search_alg = OptunaSearch(
            space=OptunaSpace(space.to_dict()), metric=metric, mode=mode, seed=settings.seed
        )
        param_space = {}
        num_samples = settings.num_samples or len(configs)
        max_concurrent_trials = settings.max_concurrent
    scheduler = None
    if settings.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            metric="miou", mode="max", max_t=max_epochs(configs), grace_period=1
        )
    tune_config = tune.TuneConfig(
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=num_samples,
        max_concurrent_trials=max_concurrent_trials,
        reuse_actors=True,
        trial_dirname_creator=_trial_dirname,
    )
    tags = {
        **tracking.sweep_tags(
            settings.mlflow_experiment, space.name, settings.strategy, settings.role
        ),
        **settings.extra_tags,
    }
    run_config = tune.RunConfig(
        name=settings.name,
        storage_path=str(settings.experiment_path.parent),
        callbacks=[MlflowTrackingCallback(settings.tracking_uri, settings.mlflow_experiment, tags)],
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        progress_reporter=progress_reporter(space),
        verbose=settings.verbose,
    )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def restore_tuner(settings: SweepSettings) -> tune.Tuner:
    """The interrupted sweep at ``settings.experiment_path``: unfinished and errored trials
    continue from their last checkpoints; finished trials are not run again."""
    return tune.Tuner.restore(
        str(settings.experiment_path),
        trainable=make_trainable(settings.cpus_per_trial, settings.gpus_per_trial),
        resume_unfinished=True,
        resume_errored=True,
    )


def has_sweep(path: Path) -> bool:
    """Whether ``path`` holds a Tune experiment that ``--resume`` can restore."""
    return bool(tune.Tuner.can_restore(str(path)))


def planned_trials(settings: SweepSettings) -> int:
    """How many trials the sweep runs: the grid's size, or ``num_samples`` for Optuna."""
    size = len(settings.search_space())
    return size if settings.search == "grid" else settings.num_samples or size


def configure_tune_environment() -> None:
    """Tune's classic progress table, and an experiment snapshot at least every 5 s so an
    interrupted driver loses little (both only where the user has not set them)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    # keeping one checkpoint per trial forces a snapshot per report: intended, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def run_sweep(settings: SweepSettings, *, resume: bool = False, save: bool = True) -> SweepOutcome:
    """Start (or resume) the sweep and wait for it; Ray is joined or started as needed.

    ``save``: write the settings for ``--resume`` (a strategy saves its own, whole settings
    and runs its phases with ``save=False``).
    """
    configure_tune_environment()
    init_ray(settings.address)
    check_cluster(settings)
    if resume:
        tuner = restore_tuner(settings)
    else:
        if save:
            save_settings(settings)
        tuner = build_tuner(settings)
    results = tuner.fit()
    # trials an interrupted sweep never created count as unfinished too
    total = max(len(results), planned_trials(settings))
    errored = results.num_errors
    finished = results.num_terminated
    return SweepOutcome(
        name=settings.name,
        path=settings.experiment_path,
        tracking_uri=settings.tracking_uri,
        total=total,
        finished=finished,
        errored=errored,
    )
