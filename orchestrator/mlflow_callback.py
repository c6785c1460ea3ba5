"""The driver-side Tune callback that turns trial events into MLflow runs (:mod:`orchestrator.store`).

It is the only MLflow writer of a sweep: trials report to Tune, the driver writes, so trials never
contend on a SQLite file. Every write goes through a :class:`~orchestrator.tracking_queue.
WriteQueue`, so Tune's loop (and so training) never waits for the store, a store outage delays
writes instead of losing them, and the final flush says what could not be written.

How a run ends follows how its trial ended (``orchestrator.ledger``): FINISHED when its last
epoch reported; FINISHED with tag ``stopped_early`` when the scheduler stopped it; FAILED with
the error on a final failure; KILLED when the driver was interrupted (``--resume`` reopens it).
A reopened run logs only epochs above those it already holds, so a trial resumed from an older
checkpoint never logs a step twice.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from orchestrator import store
from orchestrator.ledger import (
    FAILED,
    FINISHED,
    STOPPED_EARLY,
    TrialLedger,
    ended_as,
    epochs_completed,
)
from orchestrator.tracking_queue import WriteQueue
from trainables.config import TrialConfig
from trainables.owned_folders import owned_prefix, remove_stale
from trainables.run_schema import Artifact, Metric, MlflowTag, Tag

log = logging.getLogger(__name__)

#: Result keys that are not trial metrics (Tune's bookkeeping, and our labels).
NON_METRIC_KEYS = frozenset(
    {
        *AUTO_RESULT_KEYS,
        "done",
        "trial_id",
        "experiment_tag",
        "should_checkpoint",
        "node_id",
        "final",
        # the grid and band a trial runs at are params (lrg_effective, native_lrg, ...): logged
        # once, as params, not again as constant metrics
        Metric.LRG,
        Metric.NU_MAX,
        Metric.NATIVE_LRG,
    }
)
#: What a callback pickled into ``tuner.pkl`` keeps (its settings, no live client).
_PICKLED = ("tracking_uri", "experiment", "tags", "experiment_path", "flush_seconds", "log_model")
#: How long the end of a sweep waits for queued writes before reporting them lost.
FLUSH_SECONDS = 120.0
#: The callbacks of the sweeps this driver runs, by experiment path (``run_sweep`` reads the
#: flush's outcome here; a restored Tuner builds its own callback from ``tuner.pkl``).
ACTIVE: dict[str, MlflowTrackingCallback] = {}


def numeric_metrics(values: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, float]:
    """The numeric (non-bool) entries of ``values``, as floats."""
    skip = set(exclude)
    return {
        k: float(v)
        for k, v in values.items()
        if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
    }


class MlflowTrackingCallback(tune.Callback):
    """Driver-side adapter from Tune's trial events to :mod:`orchestrator.store` (see the module
    docstring). ``lost`` holds, after the sweep, the writes the final flush could not make."""

    _open_parent: Callable[[], str | None] | None

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        tags: Mapping[str, str],
        experiment_path: str | Path,
        flush_seconds: float = FLUSH_SECONDS,
        log_model: bool = False,
        open_parent: Callable[[], str | None] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.tags = dict(tags)
        self.experiment_path = str(experiment_path)
        self.flush_seconds = flush_seconds
        self.log_model = log_model  # each finished trial's network as an MLflow model
        self._reset()
        self._open_parent = open_parent  # the sweep's run, opened as the first write

    def _reset(self) -> None:
        self._open_parent = None
        self.parent_id: str | None = self.tags.get(MlflowTag.PARENT_RUN_ID)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._queue: WriteQueue | None = None
        # touched on the writer thread only
        self._runs: dict[str, str | None] = {}  # trial id -> run id (None: already finished)
        self._last_step: dict[str, int] = {}  # run id -> highest epoch logged
        # added on Tune's thread; removed on the writer's once written, or on Tune's by the
        # final flush once the writer has stopped (the copies of lost writes)
        self._copies: set[Path] = set()  # driver-side copies of checkpoint artifacts
        # touched on Tune's thread only
        self._closed: set[str] = set()
        self._opened: set[str] = set()
        self.lost: list[str] = []
        self.ledger = TrialLedger.open(self.experiment_path)
        ACTIVE[self.experiment_path] = self

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: no live client
        keys = _PICKLED
        return {k: getattr(self, k) for k in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("flush_seconds", FLUSH_SECONDS)
        self.__dict__.setdefault("log_model", False)
        self._reset()

    # -------------------------------------------------------------- plumbing

    @property
    def queue(self) -> WriteQueue:
        if self._queue is None:
            self._queue = WriteQueue(self.tracking_uri)
        return self._queue

    @property
    def client(self) -> Any:
        """The store's client and experiment (writer thread)."""
        if self._client is None:
            self._client = store.make_client(self.tracking_uri)
        if self._experiment_id is None:
            self._experiment_id = store.ensure_experiment(
                self._client, self.experiment, self.tracking_uri
            )
        return self._client

    def _open(self, trial_id: str, config: TrialConfig, began: int | None = None) -> str | None:
        """The trial's run (created, or reopened with its highest logged epoch); None when it
        already FINISHED (writer thread). ``began``: the trial's start (ms), a new run's start."""
        if trial_id not in self._runs:
            client = self.client
            assert self._experiment_id is not None
            run_id, finished = store.start_trial_run(
                client, self._experiment_id, trial_id, config, self.tags, start_time=began
            )
            self._runs[trial_id] = None if finished else run_id
            if not finished:
                self._last_step[run_id] = store.last_logged_epoch(client, run_id)
        return self._runs[trial_id]

    # -------------------------------------------------------------- Tune hooks

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        remove_stale(
            None, ARTIFACTS_PREFIX
        )  # copies a killed driver left (a checkpoint, with --log-model)
        if self._open_parent is not None:
            opener, self._open_parent = self._open_parent, None
            self.queue.put("open the sweep's run", lambda: self._parent_opened(opener()))
        _ = self.queue

    def _parent_opened(self, run_id: str | None) -> None:
        """Trial runs opened from now on nest under ``run_id`` (writer thread)."""
        if run_id is not None:
            self.use_parent(run_id)

    def open_parent_first(self, opener: Callable[[], str | None]) -> None:
        """Open the sweep's run with ``opener`` as the first write of the next Tune run (a
        callback restored from ``tuner.pkl`` on resume): queued and retried like every write,
        so the trial runs it opens next nest under it."""
        self._open_parent = opener

    def use_parent(self, run_id: str) -> None:
        """Nest the trial runs this callback opens under the sweep's run ``run_id``."""
        self.tags[MlflowTag.PARENT_RUN_ID] = run_id
        self.parent_id = run_id

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        trial_id = str(trial.trial_id)
        self._closed.discard(trial_id)
        self.ledger.forget(trial_id)  # a retried or resumed trial has not ended (yet)
        self._opened.add(trial_id)
        config = TrialConfig.from_dict(trial.config)  # the Ray edge: Tune's trial dict
        began = _now_ms()  # the event's time, not the writer's: the run spans the trial
        self.queue.put(
            f"open the run of trial {trial_id}", lambda: self._open_only(trial_id, config, began)
        )

    def _open_only(self, trial_id: str, config: TrialConfig, began: int) -> None:
        self._open(trial_id, config, began)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        trial_id = str(trial.trial_id)
        metrics = numeric_metrics(result, exclude=NON_METRIC_KEYS)
        if not metrics:
            return
        step = int(result.get(Metric.EPOCH, result.get("training_iteration", 1) - 1))
        node = {Tag.NODE_ID: result.get("node_id"), Tag.NODE_IP: result.get("node_ip")}
        node_tags = {k: str(v) for k, v in node.items() if v}
        config = TrialConfig.from_dict(trial.config)
        stamp = _now_ms()  # fixed now: a retried write repeats the same rows
        self.queue.put(
            f"epoch {step} of trial {trial_id}",
            lambda: self._log(trial_id, config, metrics, step, node_tags, stamp),
        )

    def _log(
        self,
        trial_id: str,
        config: TrialConfig,
        metrics: dict[str, float],
        step: int,
        node_tags: dict[str, str],
        stamp: int,
    ) -> None:
        run_id = self._open(trial_id, config)
        if run_id is None or step <= self._last_step.get(run_id, -1):
            return  # finished, or an epoch this run already holds (resumed from an older one)
        store.log_metrics(self.client, run_id, metrics, step=step, timestamp=stamp)
        if node_tags:
            store.set_tags(self.client, run_id, node_tags)
        self._last_step[run_id] = step

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        trial_id = str(trial.trial_id)
        outcome = ended_as(trial.last_result, trial_id, errored=False)
        if outcome is None:  # stopped without ending: the driver is going down
            self._close(trial, "KILLED", None, epochs_completed(trial.last_result))
            return
        self.ledger.record(trial_id, outcome, epochs_completed(trial.last_result))
        tags = {}
        if outcome == STOPPED_EARLY:
            tags = {
                Tag.STOPPED_EARLY: "true",
                Tag.EPOCHS_COMPLETED: str(epochs_completed(trial.last_result)),
            }
        self._close(trial, "FINISHED", None, None, tags)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        trial_id = str(trial.trial_id)
        self.ledger.record(trial_id, FAILED, epochs_completed(trial.last_result))
        self._close(trial, "FAILED", _error_text(trial), None)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Runs of trials an interrupted driver left behind are KILLED (``--resume`` reopens
        them); then the final flush: what it could not write is kept in ``lost``."""
        for trial in trials:
            trial_id = str(trial.trial_id)
            if trial_id in self._opened and trial_id not in self._closed:
                self._close(trial, "KILLED", None, epochs_completed(trial.last_result))
        if self._queue is not None:
            self.lost += self._queue.close(self.flush_seconds)
            if self._queue.stopped:  # else a write still running may read its copy
                for copy in list(self._copies):  # the copies of writes that were lost
                    self._remove_copy(copy)
            self._queue = None
            if self.lost:
                log.warning(
                    "tracking store %s: %d write(s) could not be made: %s",
                    self.tracking_uri,
                    len(self.lost),
                    "; ".join(self.lost[:5]),
                )

    # -------------------------------------------------------------- closing a run

    def _close(
        self,
        trial: Any,
        status: str,
        error: str | None,
        epochs: int | None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Queue the run's end: artifacts of its last checkpoint (copied now: Tune may delete
        the checkpoint before the write happens), tags, status."""
        trial_id = str(trial.trial_id)
        if trial_id in self._closed:
            return
        self._closed.add(trial_id)
        config = TrialConfig.from_dict(trial.config)
        with_model = self.log_model and status == "FINISHED" and not tags
        artifacts = _copy_artifacts(trial.checkpoint, with_model) if status != "KILLED" else None
        extra = dict(tags or {})
        if epochs is not None:
            extra[Tag.EPOCHS_COMPLETED] = str(epochs)
        ended = _now_ms()  # the trial's end, not the writer's (which draws spectrum.png first)

        def close() -> None:
            run_id = self._open(trial_id, config)
            if run_id is not None:
                if artifacts is not None:
                    store.log_trial_artifacts(self.client, run_id, artifacts)
                if extra:
                    store.set_tags(self.client, run_id, extra)
                store.end_trial_run(self.client, run_id, status=status, error=error, end_time=ended)
                if with_model and artifacts is not None:
                    self._log_model(trial_id, run_id, artifacts)
            if artifacts is not None:  # written (or the run had ended already): not retried
                self._remove_copy(artifacts)

        if artifacts is not None:
            self._copies.add(artifacts)
        self.queue.put(f"close the run of trial {trial_id} ({status})", close)

    def _remove_copy(self, artifacts: Path) -> None:
        """Forget and delete a driver-side artifact copy (its write made, not needed, or lost)."""
        self._copies.discard(artifacts)
        shutil.rmtree(artifacts, ignore_errors=True)

    def _log_model(self, trial_id: str, run_id: str, artifacts: Path) -> None:
        """``--log-model``: the network of the run's last checkpoint as its MLflow model. Not
        retried (the run is already closed, and a retry would log a second model): a failure is
        a warning and a line in ``lost``."""
        from orchestrator.model_logging import log_trial_model

        if not (artifacts / Artifact.CHECKPOINT_PT).exists():
            return
        try:
            log_trial_model(self.tracking_uri, run_id, artifacts)
        except Exception as err:
            log.warning("the model of trial %s was not logged: %s", trial_id, err)
            self.lost.append(f"log the model of trial {trial_id} ({err})")


#: The driver's copies of a trial's artifacts: this prefix, then its owner
#: (``trainables.owned_folders``), so a killed driver's copies are removed by the next one.
ARTIFACTS_PREFIX = "spectral-sweep-artifacts-"


def _copy_artifacts(checkpoint: Any, with_model: bool = False) -> Path | None:
    """The checkpoint's small artifact files (and its weights when the model is logged),
    copied to a driver-side temporary folder."""
    if checkpoint is None:
        return None
    target = Path(tempfile.mkdtemp(prefix=owned_prefix(ARTIFACTS_PREFIX)))
    names = list(store.TRIAL_ARTIFACTS)
    if with_model:
        names.append(Artifact.CHECKPOINT_PT)
    try:
        with checkpoint.as_directory() as directory:
            for name in names:
                if (Path(directory) / name).exists():
                    shutil.copy2(Path(directory) / name, target / name)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-made copy left behind
        raise
    return target


def _now_ms() -> int:
    """Now, in MLflow's unit (ms since the epoch)."""
    return int(time.time() * 1000)


def _error_text(trial: Any) -> str:
    text = None
    try:
        text = trial.get_error()
    except Exception:  # storage gone: fall back to the local error file
        text = None
    if not text and trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    return str(text or "trial failed (no error text recorded)")


__all__ = [
    "ACTIVE",
    "FINISHED",
    "NON_METRIC_KEYS",
    "MlflowTrackingCallback",
    "numeric_metrics",
]
