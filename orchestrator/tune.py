"""A search space -> a Ray Tune sweep: trainable, search, scheduler, resources, MLflow, resume.

This module imports Ray at the top; the CLI imports it only inside the commands that run sweeps,
so ``spectral-sweep --help``, ``spaces`` and ``sweep --dry-run`` never load Ray.

- :func:`spectral_sweep_trial` is the function trainable: it turns Tune's config into a trial
  (``trainables.trial.run_trial``) and forwards each evaluation with ``tune.report``, the
  checkpoint directory holding ``checkpoint.pt``, ``spectrum.csv`` and ``per_class_iou.json``
  (and ``posthoc.csv`` on the final one, with ``eval_lrgs``).
- :class:`~orchestrator.mlflow_callback.MlflowTrackingCallback` runs in the driver and is the
  only MLflow writer; :mod:`orchestrator.param_space` turns the space into Tune's search objects.
- :func:`run_sweep` checks the inputs, starts (or joins) Ray, builds or restores the
  ``Tuner`` and fits it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from analysis.pareto import pareto_front
from orchestrator import store
from orchestrator.ledger import SCHEDULER_STOPS, TrialLedger
from orchestrator.mlflow_callback import ACTIVE, MlflowTrackingCallback
from orchestrator.optuna_study import prepare_study, record_front, sweep_points
from orchestrator.param_space import OptunaSpace, complete_configs, grid_param_space, max_epochs
from orchestrator.process_gc import configure_process
from orchestrator.reconcile import reconcile
from orchestrator.settings import SweepOutcome, SweepSettings, save_settings
from orchestrator.sweep_run import close_parent_run, open_parent_run
from orchestrator.system_metrics import SystemMetricsSampler
from orchestrator.uris import is_local_uri
from search_spaces import SearchSpace
from trainables.config import DeviceName, TrialConfig
from trainables.errors import InputError
from trainables.run_schema import Metric, MlflowTag, posthoc_metrics

log = logging.getLogger(__name__)


#: Columns of the terminal progress table: metric -> header.
PROGRESS_METRICS = {
    Metric.EPOCH: "epoch",
    Metric.LOSS: "loss",
    Metric.MIOU: "mIoU",
    Metric.GFLOPS: "GFLOPs",
    Metric.FPI: "FPI",
    Metric.R_CE_LRG: "R_ce(lrg)",
}


# --------------------------------------------------------------------- the trainable


def spectral_sweep_trial(
    config: dict[str, Any],
    models: dict[str, Any] | None = None,
    system_metrics: bool = False,
) -> None:
    """Tune's function trainable: one ``run_trial`` whose reports go to ``tune.report``.

    Resumes from Tune's checkpoint when there is one (a retried or restored trial), so a
    failure costs at most one evaluation interval; a checkpoint of the last epoch means the
    trial already reported its final result (it failed after it, or the driver stopped before
    Tune saw the trial end), so it returns at once and Tune ends the trial with that result:
    nothing is evaluated or reported twice. Each result carries ``node_id`` (the Ray
    node that ran it) for the MLflow tags. ``models``: the driver's own model registrations
    (``register_model``), registered here first; ``system_metrics``: MLflow's system metrics
    sampled during each evaluation interval and reported with it (``system/...``).
    """
    configure_process()  # a worker's first trial: before torch and timm are imported
    from trainables.checkpoint import holds_last_epoch, scratch_folder
    from trainables.model_registry import MODELS
    from trainables.trial import TrialReport, run_trial

    MODELS.update(models or {})  # before the config is checked: it may name one of them
    cfg = TrialConfig.from_dict(config)  # the Ray edge: Tune's dict becomes the trial's config
    cfg = dataclasses.replace(cfg, device=trial_device(cfg.device, ray.get_gpu_ids()))
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # per-report INFO
    node_id = ray.get_runtime_context().get_node_id()
    with scratch_folder() as tmp:
        local = Path(tmp) / "checkpoint"
        restored = tune.get_checkpoint()
        if restored is not None:
            restored.to_directory(str(local))
            if holds_last_epoch(local, cfg):
                return

        sampler = SystemMetricsSampler() if system_metrics else None

        def forward(report: TrialReport) -> None:
            metrics: dict[str, Any] = dict(report.metrics)
            if sampler is not None:
                metrics.update(sampler.take())
            metrics["node_id"] = node_id
            metrics["final"] = report.final  # the trial's last epoch (orchestrator.ledger)
            metrics.update(posthoc_metrics(report.posthoc))  # eval_lrgs, on the final report
            checkpoint = None
            if report.checkpoint_path is not None:
                store.write_trial_artifacts(
                    report.checkpoint_path, report.spectrum, report.per_class_iou, report.posthoc
                )
                checkpoint = tune.Checkpoint.from_directory(str(report.checkpoint_path))
            tune.report(metrics, checkpoint=checkpoint)

        try:
            run_trial(cfg, report=forward, checkpoint_dir=local, resume=True)
        finally:
            if sampler is not None:
                sampler.stop()


def trial_device(device: DeviceName, gpu_ids: Sequence[Any]) -> DeviceName:
    """The device a trial runs on, given the GPUs Ray assigned it: ``auto`` is the CPU when Ray
    gave it none. Ray (2.48 on) leaves ``CUDA_VISIBLE_DEVICES`` alone for a task or actor that
    asked for no GPU, so without this every trial of a ``--gpus-per-trial 0`` sweep on a GPU
    machine would pick ``cuda:0``: as many trials on one GPU as there are CPUs, outside Ray's
    accounting. ``cuda`` without a GPU share is refused (preflight refuses it first with the
    embedded Ray; this catches a cluster)."""
    if gpu_ids or device == "cpu":
        return device
    if device == "cuda":
        raise InputError(
            "device 'cuda' but Ray assigned this trial no GPU; pass --gpus-per-trial 1 "
            "(or a share such as 0.5)"
        )
    return "cpu"


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def make_trainable(settings: SweepSettings) -> Any:
    """The trainable with its per-trial resources (fractional GPUs allowed), the driver's own
    model registrations (pickled by value when defined in a script or notebook) and the
    system-metrics switch."""
    from trainables.model_registry import registered_models

    trainable = tune.with_parameters(
        spectral_sweep_trial,
        models=registered_models(),
        system_metrics=settings.system_metrics,
    )
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    return tune.with_resources(trainable, resources)


# --------------------------------------------------------------------- Ray


#: Whether this process started its own local Ray (and so may shut it down).
_STARTED: list[bool] = []


def init_ray(address: str | None) -> None:
    """Join the Ray the caller already started, the cluster at ``address``, or start one here."""
    if ray.is_initialized():
        return
    own = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # the program's own
    try:
        if address is None:
            import_in_background(IMPORTED_WHILE_RAY_STARTS)
            ray.init(
                address="local",  # embedded, even where RAY_ADDRESS names a cluster
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=True,
            )
            _STARTED[:] = [True]
        else:
            ray.init(address=address)
    except ConnectionError as err:
        raise InputError(f"cannot connect to Ray at {address!r}: {err}") from None
    if not own:
        terminate_as_interrupt()


def terminate_as_interrupt() -> None:
    """SIGTERM (``timeout``, ``kill``, a container's stop) ends the driver as Ctrl-C does: Tune
    saves its state and stops, the runs are closed KILLED, the resume command is printed, exit
    130. Installed after ``ray.init``, which sets a SIGTERM handler of its own (``sys.exit``:
    exit 1, runs left RUNNING, no resume command); ``init_ray`` keeps a handler the program
    had set before. Only the main thread may set handlers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    signal.raise_signal(signal.SIGINT)


#: Modules the driver imports before the first trial (Tune's TensorBoard logger imports
#: ``tensorboardX``, and with it torch: 1.3 s), imported in a thread while a local Ray starts
#: (about 3 s, mostly waiting for Ray's processes) instead of after it.
IMPORTED_WHILE_RAY_STARTS = ("tensorboardX",)


def import_in_background(names: tuple[str, ...]) -> threading.Thread:
    """Import ``names`` in a daemon thread (a missing one is skipped: whoever needs it reports
    it); a thread that imports one of them meanwhile waits for this import to finish."""

    def run() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError:
                continue

    thread = threading.Thread(target=run, name="import-while-ray-starts", daemon=True)
    thread.start()
    return thread


def stop_local_ray() -> bool:
    """Shut down the local Ray this process started (the demo, before its analysis and report:
    Ray's processes end and free their memory, and their log lines stop). Whether it did: a Ray
    the caller started, or a cluster, is left alone.

    In the calling thread, not in a thread beside it: while Ray shuts down, any Ray object the
    other thread frees (a reference Tune held, collected as garbage) reaches a core worker that
    is already shut down, and Ray ends the process with exit code 1 (seen in CI)."""
    if not (_STARTED and ray.is_initialized()):
        return False
    _STARTED.clear()
    ray.shutdown()
    return True


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
    if available.get("GPU", 0.0) and not settings.gpus_per_trial:
        log.warning(
            "the Ray cluster has %g GPU(s) but --gpus-per-trial is 0: the trials run on the "
            "CPU; pass --gpus-per-trial 1 (or a share such as 0.5) to train on the GPUs",
            available["GPU"],
        )
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    if len(hosts) > 1 and is_local_uri(settings.tracking_uri):
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


def build_tuner(
    settings: SweepSettings,
    parent_run: str | None = None,
    open_parent: Callable[[], str | None] | None = None,
) -> tune.Tuner:
    """A new ``Tuner`` for the settings (grid or Optuna, FIFO or ASHA, MLflow callback); trial
    runs nest under ``parent_run`` (the sweep's run), or under the run ``open_parent`` opens
    as the callback's first write (in the background, while Tune starts its workers)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space = settings.search_space()
    configs = space.configs()  # the Ray edge: Tune's param_space takes plain dicts
    trainable = make_trainable(settings)
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
        from orchestrator.optuna_study import optuna_search
        from orchestrator.unique_search import UniqueConfigs

        search_alg = UniqueConfigs(optuna_search(settings, OptunaSpace(space.to_dict())))
        param_space = {}
        num_samples = settings.num_samples or len(configs)
        max_concurrent_trials = settings.max_concurrent
    scheduler = None
    if settings.scheduler == "asha":
        scheduler = RecordingASHA(
            metric=settings.asha_metric,
            mode="max",
            time_attr="training_iteration",
            max_t=max_epochs(space.trials()),
            grace_period=settings.asha_grace_period,
            reduction_factor=settings.asha_reduction_factor,
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
        **store.sweep_tags(
            settings.mlflow_experiment, space.name, settings.strategy, settings.role
        ),
        **settings.extra_tags,
    }
    if parent_run is not None:
        tags[MlflowTag.PARENT_RUN_ID] = parent_run
    callback = MlflowTrackingCallback(
        settings.tracking_uri,
        settings.mlflow_experiment,
        tags,
        settings.experiment_path,
        flush_seconds=settings.tracking_flush_seconds,
        log_model=settings.log_model,
        open_parent=open_parent,
    )
    run_config = tune.RunConfig(
        name=settings.name,
        storage_path=str(settings.experiment_path.parent),
        callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        # two: the newest, and the one the last experiment snapshot may still point to (a
        # driver killed between a report and the next snapshot resumes from it)
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        progress_reporter=progress_reporter(space),
        verbose=settings.verbose,
    )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )


#: Checkpoints kept per trial (see ``build_tuner``).
KEEP_CHECKPOINTS = 2


class RecordingASHA(ASHAScheduler):
    """Tune's ASHA, noting the trials it stops (``orchestrator.ledger.SCHEDULER_STOPS``) so
    their runs say they stopped early instead of looking finished."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision = str(super().on_trial_result(tune_controller, trial, result))
        if decision == self.STOP and not result.get("final"):
            SCHEDULER_STOPS.add(str(trial.trial_id))
        return decision


def restore_tuner(settings: SweepSettings) -> tune.Tuner:
    """The interrupted sweep at ``settings.experiment_path``: unfinished and errored trials
    continue from their last checkpoints; finished trials are not run again."""
    return tune.Tuner.restore(
        str(settings.experiment_path),
        trainable=make_trainable(settings),
        resume_unfinished=True,
        resume_errored=True,
    )


def read_results(settings: SweepSettings) -> Any:
    """The ``ResultGrid`` of the sweep at ``settings.experiment_path``, read from Tune's state
    (nothing runs)."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    if not has_sweep(settings.experiment_path):
        raise InputError(f"no Tune sweep at {settings.experiment_path}")
    return ResultGrid(ExperimentAnalysis(str(settings.experiment_path)))


def has_sweep(path: Path) -> bool:
    """Whether ``path`` holds a Tune experiment that ``--resume`` can restore."""
    return bool(tune.Tuner.can_restore(str(path)))


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """Around ``Tuner.fit``: the SIGINT and SIGUSR1 handlers as they were before it. Tune sets
    its own (stop the run) and puts the old one back only when a signal came, so after a fit
    that ended by itself the next Ctrl-C (during a strategy's predictions, the demo's report)
    would only set Tune's stale flag and be lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [signal.SIGINT, *([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])]
    before = {sig: signal.getsignal(sig) for sig in names}
    try:
        yield
    finally:
        for sig, handler in before.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)


def tune_state_saved(path: Path) -> bool:
    """Whether Tune saved an experiment state at ``path`` (``experiment_state-*.json``). Tune
    writes ``tuner.pkl`` about 0.2 s before its first state: a driver stopped in between left
    a sweep that ``Tuner.restore`` cannot read (a KeyError) and that recorded no trial, so
    ``--resume`` starts its Tune run anew, in place."""
    return any(path.glob("experiment_state-*.json"))


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
    # a tracking server that does not answer fails a write in seconds, not minutes: the write
    # queue (orchestrator.tracking_queue) retries it while training goes on
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


#: In the experiment folder: held (``flock``) by the driver running the sweep.
LOCK_FILE = ".spectral_sweep.lock"


@contextlib.contextmanager
def sweep_lock(path: Path) -> Iterator[None]:
    """One driver per sweep: an exclusive ``flock`` on ``<experiment>/.spectral_sweep.lock``
    for the sweep's whole run (the kernel drops it when the driver ends, SIGKILL included, so
    it never goes stale). A second driver of the same sweep (two ``--resume`` at once) would
    train the remaining trials twice, log their epochs twice and delete checkpoints the other
    one reads: it is refused. The lock is this machine's (NFS may not honour it). Folders it
    made are removed again when the sweep wrote nothing there (refused after Ray started)."""
    made = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(path) as held:
            yield held
    finally:
        _remove_if_unused(path, made)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The lock of :func:`sweep_lock`, with this process's pid in the file for the refusal."""
    with (path / LOCK_FILE).open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (pid {holder})" if holder else ""
            raise InputError(
                f"sweep {path.name!r} is running in another process{who}; wait for it to end "
                "(or stop it), then --resume"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def _remove_if_unused(path: Path, made: list[Path]) -> None:
    """Remove the folders ``made`` (deepest first) when ``path`` holds only the lock."""
    try:
        if made and {p.name for p in path.iterdir()} <= {LOCK_FILE}:
            (path / LOCK_FILE).unlink(missing_ok=True)
            for folder in made:
                folder.rmdir()
    except OSError:
        pass  # something else is there now: keep it


def run_sweep(settings: SweepSettings, *, resume: bool = False, save: bool = True) -> SweepOutcome:
    """Start (or resume) the sweep and wait for it; Ray is joined or started as needed; one
    driver at a time (:func:`sweep_lock`).

    ``save``: write the settings for ``--resume`` (a strategy saves its own, whole settings
    and runs its phases with ``save=False``).
    """
    with sweep_lock(settings.experiment_path):
        return _run_sweep(settings, resume=resume, save=save)


def _run_sweep(settings: SweepSettings, *, resume: bool, save: bool) -> SweepOutcome:
    configure_tune_environment()
    opening = store.open_in_background(settings.tracking_uri)
    init_ray(settings.address)
    if opening is not None:
        opening.join()
    check_cluster(settings)
    if resume and not tune_state_saved(settings.experiment_path):
        log.info(
            "Tune recorded no trial of sweep %r before it stopped: starting anew", settings.name
        )
        resume, save = False, False  # its settings (and study name) are saved already
    if resume:
        tuner = restore_tuner(settings)
        restored = ACTIVE.get(str(settings.experiment_path))  # unpickled from tuner.pkl
        if restored is not None:
            restored.open_parent_first(lambda: open_parent_run(settings))
    else:
        prepare_study(settings)
        if save:
            save_settings(settings)
        # the parent run (and a new store's schema) is made by the callback's writer, in the
        # background while Tune starts its workers: a sweep's first seconds are not spent on it
        tuner = build_tuner(settings, open_parent=lambda: open_parent_run(settings))
    with kept_signal_handlers():
        results = tuner.fit()
    callback = ACTIVE.pop(str(settings.experiment_path), None)
    parent = callback.parent_id if callback is not None else None
    lost = list(callback.lost) if callback is not None else []
    lost += reconcile(settings, results, parent)
    outcome = sweep_outcome(settings, results, lost)
    if settings.multi_objective:
        points = sweep_points(results)
        outcome.pareto = pareto_front(points) if len(points) else None
        if len(points):
            outcome.tracking_lost += record_front(settings, parent, points)
    close_parent_run(settings, parent, outcome)
    return outcome


def sweep_outcome(settings: SweepSettings, results: Any, lost: list[str]) -> SweepOutcome:
    """Counts as the ledger has them (what Tune calls TERMINATED may be an interrupt); trials
    an interrupted sweep never created count as unfinished too."""
    ledger = TrialLedger.open(settings.experiment_path)
    ids = [Path(r.path).name for r in results]  # trial directories are named by trial id
    counts = ledger.counts(ids)
    errored = max(counts["failed"], results.num_errors)
    return SweepOutcome(
        results=results,
        name=settings.name,
        path=settings.experiment_path,
        tracking_uri=settings.tracking_uri,
        total=max(len(results), planned_trials(settings)),
        finished=counts["finished"],
        errored=errored,
        stopped_early=counts["stopped_early"],
        tracking_lost=lost,
    )
