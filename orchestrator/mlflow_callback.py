"""The driver-side Tune callback that turns trial events into MLflow runs (:mod:`orchestrator.store`).

It is the only MLflow writer of a sweep: trials report to Tune, the driver writes, so trials never
contend on a SQLite file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from orchestrator import store
from trainables.config import TrialConfig
from trainables.run_schema import Metric, Tag

log = logging.getLogger(__name__)

#: Result keys that are not trial metrics (Tune's bookkeeping, and our node labels).
NON_METRIC_KEYS = frozenset(
    {*AUTO_RESULT_KEYS, "done", "trial_id", "experiment_tag", "should_checkpoint", "node_id"}
)


def numeric_metrics(values: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, float]:
    """The numeric (non-bool) entries of ``values``, as floats."""
    skip = set(exclude)
    return {
        k: float(v)
        for k, v in values.items()
        if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
    }


class MlflowTrackingCallback(tune.Callback):
    """Driver-side adapter from Tune's trial events to :mod:`orchestrator.store`.

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
            self._client = store.make_client(self.tracking_uri)
            self._experiment_id = store.ensure_experiment(
                self._client, self.experiment, self.tracking_uri
            )
        return self._client

    def _run_id(self, trial: Any) -> str | None:
        """The trial's open run (created on first sight); None when it already FINISHED."""
        trial_id = str(trial.trial_id)
        if trial_id not in self._runs:
            client = self.client
            assert self._experiment_id is not None
            config = TrialConfig.from_dict(trial.config)  # the Ray edge: Tune's trial dict
            run_id, finished = store.start_trial_run(
                client, self._experiment_id, trial_id, config, self.tags
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
        self._safely("metrics", trial, lambda: self._log_result(trial, result))

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
                    lambda run_id=run_id: store.end_trial_run(self.client, run_id, "KILLED"),
                )

    # -------------------------------------------------------------- writes

    def _log_result(self, trial: Any, result: Mapping[str, Any]) -> None:
        run_id = self._run_id(trial)
        if run_id is None:
            return
        metrics = numeric_metrics(result, exclude=NON_METRIC_KEYS)
        if not metrics:
            return
        step = int(result.get(Metric.EPOCH, result.get("training_iteration", 1) - 1))
        store.log_metrics(self.client, run_id, metrics, step=step)
        node = {Tag.NODE_ID: result.get("node_id"), Tag.NODE_IP: result.get("node_ip")}
        store.set_tags(self.client, run_id, {k: v for k, v in node.items() if v})

    def _close(self, trial: Any, status: str, error: str | None = None) -> None:
        trial_id = str(trial.trial_id)
        run_id = self._run_id(trial)
        if run_id is None or trial_id in self._closed:
            return
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                store.log_trial_artifacts(self.client, run_id, directory)
        store.end_trial_run(self.client, run_id, status=status, error=error)
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


__all__ = ["NON_METRIC_KEYS", "MlflowTrackingCallback", "numeric_metrics"]
