"""The sweep's parent run: one per experiment, holding the sweep's settings, its space and its
outcome; trials, the analysis and a strategy's predictions nest under it (``mlflow.parentRunId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator import store
from orchestrator.run_metadata import source_tags
from orchestrator.store import _newest_run, log_metrics, log_params, retry_locked
from trainables.run_schema import Artifact, Role, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from orchestrator.settings import SweepOutcome, SweepSettings


def open_sweep_run(
    client: MlflowClient,
    experiment_id: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
    space_yaml: str,
) -> str:
    """The sweep's parent run (created once per experiment, reopened on resume): its settings as
    params, the space as ``space.yaml``; trials, analyses and plans nest under it."""
    existing = _newest_run(client, experiment_id, f"tags.`{Tag.ROLE}` = '{Role.SWEEP}'")
    if existing is not None:
        run_id = str(existing.info.run_id)
        if existing.info.status != "RUNNING":
            retry_locked(lambda: client.update_run(run_id, status="RUNNING"))
        return run_id
    all_tags = {**tags, **source_tags(), Tag.ROLE: Role.SWEEP}
    name = str(tags.get(Tag.SWEEP, "sweep"))
    run = retry_locked(lambda: client.create_run(experiment_id, tags=all_tags, run_name=name))
    run_id = str(run.info.run_id)
    log_params(client, run_id, params)
    retry_locked(lambda: client.log_text(run_id, space_yaml, Artifact.SPACE_YAML))
    return run_id


def close_sweep_run(
    client: MlflowClient, run_id: str, counts: Mapping[str, float], status: str
) -> None:
    """The sweep's outcome on its parent run: trial counts as metrics, and its status."""
    log_metrics(client, run_id, counts, step=0)
    retry_locked(lambda: client.set_terminated(run_id, status=status))


def open_parent_run(settings: SweepSettings) -> str:
    """The sweep's parent run in its experiment, made or reopened. A store that does not
    answer raises: the tracking queue that runs this as a sweep's first write retries it in
    order (the trial runs it opens next nest under it) and counts it lost if the store never
    answers."""
    import dataclasses

    import yaml

    values = {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("space",)}
    params = {k: str(v) for k, v in values.items() if v not in (None, "", [], {})}
    tags = store.sweep_tags(
        settings.mlflow_experiment,
        settings.search_space().name,
        settings.strategy,
        settings.role,
    )
    client = store.make_client(settings.tracking_uri)
    experiment_id = store.ensure_experiment(
        client, settings.mlflow_experiment, settings.tracking_uri
    )
    space = yaml.safe_dump(settings.space, sort_keys=False)
    return open_sweep_run(client, experiment_id, tags, params, space)


def close_parent_run(settings: SweepSettings, parent: str | None, outcome: SweepOutcome) -> None:
    """The outcome on the parent run: counts, and FINISHED / FAILED / KILLED (interrupted)."""
    if parent is None:
        return
    counts = {
        "trials": float(outcome.total),
        "trials_finished": float(outcome.finished),
        "trials_stopped_early": float(outcome.stopped_early),
        "trials_failed": float(outcome.errored),
        "trials_unfinished": float(outcome.unfinished),
    }
    status = "KILLED" if outcome.unfinished else "FAILED" if outcome.errored else "FINISHED"
    try:
        close_sweep_run(store.make_client(settings.tracking_uri), parent, counts, status)
    except Exception as err:
        outcome.tracking_lost.append(f"close the sweep's run ({err})")


__all__ = ["close_parent_run", "close_sweep_run", "open_parent_run", "open_sweep_run"]
