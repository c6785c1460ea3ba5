"""The MLflow run store a sweep writes: one experiment per sweep, one run per trial (no Ray here).

The names written (tags, roles, params, metrics, artifacts) are :mod:`trainables.run_schema`'s;
``analysis`` reads them back through :func:`analysis.mlflow_runs.runs_frame`:

- experiment = sweep name; run name = trial id;
- tags :class:`~trainables.run_schema.Tag` (sweep, trial id, space, strategy, role, config key;
  node id / ip where the trial ran, error / error trace when it failed); the estimate
  strategy's predictions are runs with role ``prediction`` and a reference run id;
- params = :func:`trainables.run_schema.to_params` of the trial's ``TrialConfig``;
- metrics = ``TrialReport.metrics`` per evaluation, step = epoch;
- artifacts ``spectrum.csv`` (the report's spectrum frame as is, ``band_profile_init``
  included), ``spectrum.png`` and ``per_class_iou.json`` of the final evaluation; with
  ``eval_lrgs``, ``posthoc.csv`` (a row per LRG) beside the metrics ``posthoc/lrg_{S}/...``.

During a sweep the only writer is the driver (:class:`orchestrator.mlflow_callback.
MlflowTrackingCallback`), so trials never contend on a SQLite file; writes still retry on
"database is locked" in case another process (a second sweep, the UI) holds the lock.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.run_metadata import dataset_input, source_tags
from orchestrator.uris import artifact_location, sqlite_path
from trainables.errors import InputError
from trainables.run_schema import (
    MODEL_TRAINING_KIND,
    POSTHOC_COLUMNS,
    ROLES,
    STRATEGIES,
    Artifact,
    Metric,
    MlflowTag,
    Role,
    Strategy,
    Tag,
    run_name,
    to_params,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from trainables.config import TrialConfig

_MAX_TAG_CHARS = 4000
_PARAMS_PER_BATCH = 100  # MLflow's limits per log_batch call
_METRICS_PER_BATCH = 1000
T = TypeVar("T")


# --------------------------------------------------------------------- client + experiments


def retry_locked(fn: Callable[[], T], attempts: int = 10, delay: float = 0.2) -> T:
    """Call ``fn``; on a "database is locked" error wait (growing) and try again."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:
            if "database is locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(delay * (attempt + 1))
    raise AssertionError("unreachable")


def make_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` (creating the SQLite schema on first use), quietly."""
    from analysis.mlflow_runs import client_for

    return retry_locked(lambda: client_for(uri))


def open_in_background(uri: str) -> threading.Thread | None:
    """Open a SQLite store in a thread (creating its schema on first use: about 2 s of CPU)
    while Ray starts, which leaves a core idle; the sweep's first write then finds it ready.
    Opening is under the store's file lock (``client_for``), so the callback's own opening
    waits rather than races; a failure here is left to that one to report. None for a
    tracking server: nothing to create on this machine."""
    if sqlite_path(uri) is None:
        return None

    def open_quietly() -> None:
        try:
            make_client(uri)
        except Exception:  # the callback's writer opens it again and warns
            return

    thread = threading.Thread(target=open_quietly, name="open-tracking-store", daemon=True)
    thread.start()
    return thread


def ensure_experiment(client: MlflowClient, name: str, uri: str | None = None) -> str:
    """The id of experiment ``name``, created (or restored from deleted) if needed."""
    experiment = retry_locked(lambda: client.get_experiment_by_name(name))
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            retry_locked(lambda: client.restore_experiment(experiment.experiment_id))
        return str(experiment.experiment_id)
    location = artifact_location(uri, name) if uri else None
    kind = {MlflowTag.EXPERIMENT_KIND: MODEL_TRAINING_KIND}  # the UI's model-training view
    try:
        return str(
            retry_locked(
                lambda: client.create_experiment(name, artifact_location=location, tags=kind)
            )
        )
    except Exception:  # created concurrently by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def find_experiment(client: MlflowClient, name: str) -> str | None:
    """The id of an existing (active) experiment, or None."""
    experiment = retry_locked(lambda: client.get_experiment_by_name(name))
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    return str(experiment.experiment_id)


def _newest_run(client: MlflowClient, experiment_id: str, filter_string: str) -> Run | None:
    runs = retry_locked(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            max_results=1,
            order_by=["start_time DESC"],
        )
    )
    return runs[0] if runs else None


def find_trial_run(client: MlflowClient, experiment_id: str, trial_id: str) -> Run | None:
    """The run of ``trial_id`` in the experiment, if one exists (newest first)."""
    return _newest_run(client, experiment_id, f"tags.`{Tag.TRIAL_ID}` = '{trial_id}'")


def find_config_run(
    client: MlflowClient, experiment_id: str, config_key: str, role: str
) -> Run | None:
    """The newest run of a configuration (``TrialConfig.key``) in one role, if any."""
    return _newest_run(
        client,
        experiment_id,
        f"tags.`{Tag.CONFIG_KEY}` = '{config_key}' and tags.`{Tag.ROLE}` = '{role}'",
    )


# --------------------------------------------------------------------- tags


def sweep_tags(
    sweep: str, space: str, strategy: str = Strategy.EXHAUSTIVE, role: str = Role.TRIAL
) -> dict[str, str]:
    """The tags every run of a sweep carries."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return {Tag.SWEEP: sweep, Tag.SPACE: space, Tag.STRATEGY: strategy, Tag.ROLE: role}


def find_sweep_run(client: MlflowClient, experiment_id: str) -> str | None:
    """The parent run of the experiment's sweep, if it has one."""
    run = _newest_run(client, experiment_id, f"tags.`{Tag.ROLE}` = '{Role.SWEEP}'")
    return None if run is None else str(run.info.run_id)


def error_tags(error: str) -> dict[str, str]:
    """``error`` = the last non-empty line (the exception), ``error_trace`` = the tail."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "unknown error"
    return {Tag.ERROR: last[:_MAX_TAG_CHARS], Tag.ERROR_TRACE: error.strip()[-_MAX_TAG_CHARS:]}


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set several tags at once."""
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    if items:
        retry_locked(lambda: client.log_batch(run_id, tags=items))


# --------------------------------------------------------------------- params + metrics


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches of at most 100 (MLflow's limit)."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _PARAMS_PER_BATCH):
        chunk = items[i : i + _PARAMS_PER_BATCH]
        retry_locked(lambda chunk=chunk: client.log_batch(run_id, params=chunk))  # type: ignore[misc]


def log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float],
    step: int,
    timestamp: int | None = None,
) -> None:
    """Log one evaluation's metrics at ``step`` (the epoch). ``timestamp`` (ms): when it was
    measured; a retried write sends the same rows, which the store keeps once."""
    from mlflow.entities import Metric as MlflowMetric

    now = timestamp if timestamp is not None else int(time.time() * 1000)
    items = [MlflowMetric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), _METRICS_PER_BATCH):
        chunk = items[i : i + _METRICS_PER_BATCH]
        retry_locked(lambda chunk=chunk: client.log_batch(run_id, metrics=chunk))  # type: ignore[misc]


# --------------------------------------------------------------------- run lifecycle


def start_trial_run(
    client: MlflowClient,
    experiment_id: str,
    trial_id: str,
    config: TrialConfig,
    tags: Mapping[str, str],
    start_time: int | None = None,
) -> tuple[str, bool]:
    """Open (or re-open) the run of a trial; returns ``(run_id, already_finished)``.

    A trial that already has a run (a resumed sweep, a retried trial) gets that run back,
    set RUNNING again unless it FINISHED; a finished run is left untouched. ``start_time``
    (ms since the epoch): when the trial started, for a new run (default: now).
    """
    existing = find_trial_run(client, experiment_id, trial_id)
    if existing is not None:
        run_id = existing.info.run_id
        if existing.info.status == "FINISHED":
            return run_id, True
        if existing.info.status != "RUNNING":
            retry_locked(lambda: client.update_run(run_id, status="RUNNING"))
        # a restarted failure or interruption starts clean (its end sets them anew)
        for key in (Tag.ERROR, Tag.ERROR_TRACE, Tag.EPOCHS_COMPLETED):
            if key in existing.data.tags:
                retry_locked(lambda key=key: client.delete_tag(run_id, key))  # type: ignore[misc]
        return run_id, False
    all_tags = {**source_tags(), **tags, Tag.TRIAL_ID: trial_id, Tag.CONFIG_KEY: config.key}
    name = run_name(config)
    run = retry_locked(
        lambda: client.create_run(
            experiment_id, start_time=start_time, tags=dict(all_tags), run_name=name
        )
    )
    log_params(client, run.info.run_id, to_params(config))
    inputs = [dataset_input(config)]
    retry_locked(lambda: client.log_inputs(run.info.run_id, datasets=inputs))
    return run.info.run_id, False


def last_logged_epoch(client: MlflowClient, run_id: str) -> int:
    """The highest epoch a run holds (its ``epoch`` metric's latest value), -1 for none: a
    reopened run logs only epochs above it."""
    run = retry_locked(lambda: client.get_run(run_id))
    value = run.data.metrics.get(Metric.EPOCH)
    return int(value) if value is not None and math.isfinite(value) else -1


def end_trial_run(
    client: MlflowClient,
    run_id: str,
    status: str = "FINISHED",
    error: str | None = None,
    end_time: int | None = None,
) -> None:
    """Close a trial's run; a failure keeps its error text as tags. ``end_time`` (ms since
    the epoch): when the trial ended (default: now)."""
    if error:
        set_tags(client, run_id, error_tags(error))
    retry_locked(lambda: client.set_terminated(run_id, status=status, end_time=end_time))


def log_prediction_run(
    client: MlflowClient,
    experiment_id: str,
    config: TrialConfig,
    predicted: Mapping[str, float],
    tags: Mapping[str, str],
) -> str:
    """Record a configuration that was predicted, not trained, as a FINISHED run.

    Params are the trial config (as for a trained run), metrics the prediction
    (``predicted_drop``, ``predicted_miou``, ``predicted_fpi``, ``gflops``, ``r_ce``, ...),
    tags role ``prediction`` and the configuration key. A configuration that already has a
    finished prediction run keeps it (a resumed strategy logs nothing twice); an unfinished
    one (its driver died while logging it: RUNNING for good) is deleted and logged anew.
    Returns the run id.
    """
    key = config.key
    existing = find_config_run(client, experiment_id, key, Role.PREDICTION)
    if existing is not None and existing.info.status == "FINISHED":
        return str(existing.info.run_id)
    if existing is not None:
        retry_locked(lambda: client.delete_run(existing.info.run_id))
    all_tags = {**source_tags(), **tags, Tag.ROLE: Role.PREDICTION, Tag.CONFIG_KEY: key}
    parent = find_sweep_run(client, experiment_id)
    if parent is not None:
        all_tags[MlflowTag.PARENT_RUN_ID] = parent
    run = retry_locked(
        lambda: client.create_run(experiment_id, tags=dict(all_tags), run_name=f"predict-{key}")
    )
    run_id = str(run.info.run_id)
    log_params(client, run_id, to_params(config))
    finite = {k: float(v) for k, v in predicted.items() if math.isfinite(float(v))}
    log_metrics(client, run_id, finite, step=0)
    end_trial_run(client, run_id, "FINISHED")
    return run_id


# --------------------------------------------------------------------- artifacts


def log_plan_artifact(
    client: MlflowClient, run_id: str, plan: Mapping[str, Any], name: str
) -> None:
    """Attach a plan (JSON-ready dict) to the reference run it was predicted from."""
    retry_locked(lambda: client.log_dict(run_id, dict(plan), name))


#: The files of a trial's checkpoint that are logged to its run (``write_trial_artifacts``).
TRIAL_ARTIFACTS = (Artifact.SPECTRUM_CSV, Artifact.PER_CLASS_IOU_JSON, Artifact.POSTHOC_CSV)


def write_trial_artifacts(
    directory: str | Path,
    spectrum: pd.DataFrame | None,
    per_class_iou: Sequence[float],
    posthoc: Mapping[int, Mapping[str, float]] | None = None,
) -> None:
    """Write ``spectrum.csv``, ``per_class_iou.json`` (NaN -> null) and, when there are post-hoc
    evaluations (``{lrg: metrics}``), ``posthoc.csv`` into ``directory``.

    ``spectrum.csv`` keeps every column of ``spectrum`` (``band_profile_init`` included; its NaN
    bands are written empty and read back as NaN). ``posthoc.csv``: ``POSTHOC_COLUMNS``, a row
    per LRG in the order evaluated.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if spectrum is not None:
        spectrum.to_csv(directory / Artifact.SPECTRUM_CSV, index=False)
    values = [None if not math.isfinite(float(v)) else float(v) for v in per_class_iou]
    (directory / Artifact.PER_CLASS_IOU_JSON).write_text(
        json.dumps(values) + "\n", encoding="utf-8"
    )
    if posthoc:
        import pandas as pd

        rows = [{**values, Metric.LRG: int(lrg)} for lrg, values in posthoc.items()]
        frame = pd.DataFrame(rows).reindex(columns=list(POSTHOC_COLUMNS))
        frame.to_csv(directory / Artifact.POSTHOC_CSV, index=False)


def log_trial_artifacts(client: MlflowClient, run_id: str, directory: str | Path) -> list[str]:
    """Log spectrum.csv, per_class_iou.json, posthoc.csv (those present) and a spectrum.png
    drawn from the CSV."""
    directory = Path(directory)
    logged = []
    for name in TRIAL_ARTIFACTS:
        path = directory / name
        if path.exists():
            retry_locked(lambda path=path: client.log_artifact(run_id, str(path)))  # type: ignore[misc]
            logged.append(name)
    csv = directory / Artifact.SPECTRUM_CSV
    if csv.exists():
        import tempfile

        import pandas as pd

        from analysis.plots import plot_spectrum

        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / Artifact.SPECTRUM_PNG
            plot_spectrum(pd.read_csv(csv), png)
            retry_locked(lambda: client.log_artifact(run_id, str(png)))
            logged.append(Artifact.SPECTRUM_PNG)
    return logged


__all__ = [
    "TRIAL_ARTIFACTS",
    "end_trial_run",
    "ensure_experiment",
    "error_tags",
    "find_config_run",
    "find_experiment",
    "find_sweep_run",
    "find_trial_run",
    "last_logged_epoch",
    "log_metrics",
    "log_params",
    "log_plan_artifact",
    "log_prediction_run",
    "log_trial_artifacts",
    "make_client",
    "open_in_background",
    "retry_locked",
    "set_tags",
    "start_trial_run",
    "sweep_tags",
    "write_trial_artifacts",
]
