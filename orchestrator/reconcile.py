"""After every sweep (new or resumed): make each trial's MLflow run agree with Tune's own record.

Tune keeps every trial's reported results (``progress.csv``), its newest checkpoints and, in the
ledger (``orchestrator.ledger``), how it ended. The live callback writes runs as results arrive;
whatever it could not write (a store outage longer than the final flush, a driver killed between
a trial's end and its run's close) is repaired here from that record:

- a trial that **ended** (finished, stopped early) gets a run if it has none, the epochs its run
  lacks (only those above the highest it holds: no step twice), its last checkpoint's
  artifacts, its tags, and status FINISHED;
- a trial that **failed** gets status FAILED with its error;
- a trial that did **not end** (interrupted) and whose run still says RUNNING gets KILLED
  (``--resume`` reopens it).

What cannot be repaired (the store is still down) is returned as lines for the sweep to report;
the next ``--resume`` tries again. MLflow is read once per experiment.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import store
from orchestrator.ledger import FAILED, FINISHED, STOPPED_EARLY, TrialLedger, epochs_completed
from trainables.config import TrialConfig
from trainables.run_schema import Metric, MlflowTag, Tag

if TYPE_CHECKING:
    from orchestrator.settings import SweepSettings

log = logging.getLogger(__name__)


def reconcile(settings: SweepSettings, results: Any, parent: str | None = None) -> list[str]:
    """Repair the runs of ``results`` (a Tune ResultGrid); returns what could not be repaired.
    ``parent``: the sweep's run, under which every trial run is nested (runs opened while the
    store could not make the parent run were not)."""
    ledger = TrialLedger.open(settings.experiment_path)
    note_endings(ledger, results)  # first, so the counts are right even with the store down
    try:
        client = store.make_client(settings.tracking_uri)
        experiment_id = store.ensure_experiment(
            client, settings.mlflow_experiment, settings.tracking_uri
        )
        runs = _runs_by_trial(client, experiment_id)
    except Exception as err:
        return [f"reconcile {settings.name}: tracking store unreachable ({_first_line(err)})"]
    tags = store.sweep_tags(
        settings.mlflow_experiment,
        settings.search_space().name,
        settings.strategy,
        settings.role,
    )
    if parent is not None:
        tags[MlflowTag.PARENT_RUN_ID] = parent
    problems = []
    for result in results:
        trial_id = Path(result.path).name
        run = runs.get(trial_id)
        try:
            _reconcile_trial(client, experiment_id, ledger, run, result, tags)
            if parent is not None and run is not None:
                _nest(client, run, parent)
        except Exception as err:
            problems.append(f"reconcile trial {trial_id}: {_first_line(err)}")
    return problems


def _nest(client: Any, run: Any, parent: str) -> None:
    """Nest a trial run under the sweep's run when it is not (opened during an outage)."""
    if run.data.tags.get(MlflowTag.PARENT_RUN_ID) != parent:
        store.set_tags(client, run.info.run_id, {MlflowTag.PARENT_RUN_ID: parent})


def note_endings(ledger: TrialLedger, results: Any) -> None:
    """Trials whose last report was their last epoch, or that failed, but that the ledger does
    not know (the driver died before it noted the end): noted from Tune's results."""
    for result in results:
        trial_id = Path(result.path).name
        if ledger.outcome(trial_id) is not None:
            continue
        last = result.metrics or {}
        if result.error is not None:
            ledger.record(trial_id, FAILED, epochs_completed(last))
        elif last.get("final"):
            ledger.record(trial_id, FINISHED, epochs_completed(last))


def _runs_by_trial(client: Any, experiment_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    token = None
    while True:
        page = store.retry_locked(
            lambda token=token: client.search_runs(  # type: ignore[misc]
                [experiment_id], max_results=1000, page_token=token
            )
        )
        for run in page:
            trial_id = run.data.tags.get(Tag.TRIAL_ID)
            if trial_id and trial_id not in out:
                out[trial_id] = run
        token = page.token
        if not token:
            return out


def _reconcile_trial(
    client: Any,
    experiment_id: str,
    ledger: TrialLedger,
    run: Any,
    result: Any,
    tags: dict[str, str],
) -> None:
    trial_id = Path(result.path).name
    last = result.metrics or {}
    outcome = ledger.outcome(trial_id)
    status = None if run is None else run.info.status
    if outcome in (FINISHED, STOPPED_EARLY) and status != "FINISHED":
        config = TrialConfig.from_dict(result.config)
        run_id, _ = store.start_trial_run(client, experiment_id, trial_id, config, tags)
        _log_missing_epochs(client, run_id, result)
        if result.checkpoint is not None:
            with result.checkpoint.as_directory() as directory:
                store.log_trial_artifacts(client, run_id, directory)
        if outcome == STOPPED_EARLY:
            done = {Tag.STOPPED_EARLY: "true", Tag.EPOCHS_COMPLETED: str(epochs_completed(last))}
            store.set_tags(client, run_id, done)
        store.end_trial_run(client, run_id, "FINISHED")
        log.info("trial %s: its run was repaired from Tune's results", trial_id)
    elif outcome == FAILED and run is not None and status != "FAILED":
        store.end_trial_run(client, run.info.run_id, "FAILED", str(result.error))
    elif outcome is None and status == "RUNNING":
        store.set_tags(client, run.info.run_id, {Tag.EPOCHS_COMPLETED: str(epochs_completed(last))})
        store.end_trial_run(client, run.info.run_id, "KILLED")


def _log_missing_epochs(client: Any, run_id: str, result: Any) -> None:
    """Log the reported epochs the run lacks (above its highest), from Tune's history."""
    from orchestrator.mlflow_callback import NON_METRIC_KEYS, numeric_metrics

    history = result.metrics_dataframe
    if history is None or history.empty or Metric.EPOCH not in history:
        return
    have = store.last_logged_epoch(client, run_id)
    for row in history.to_dict("records"):
        epoch = row.get(Metric.EPOCH)
        if epoch is None or not math.isfinite(float(epoch)) or int(epoch) <= have:
            continue
        values = {
            k: v.item() if hasattr(v, "item") else v for k, v in row.items() if "/" not in str(k)
        }
        metrics = numeric_metrics(values, exclude=NON_METRIC_KEYS)
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        store.log_metrics(client, run_id, finite, step=int(epoch))
        have = int(epoch)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


__all__ = ["reconcile"]
