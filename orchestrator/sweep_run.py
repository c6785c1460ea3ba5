"""The sweep's parent run: one per experiment, holding the sweep's settings, its space and its
outcome; trials, the analysis and a strategy's predictions nest under it (``mlflow.parentRunId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.run_metadata import source_tags
from orchestrator.store import _newest_run, log_metrics, log_params, retry_locked
from trainables.run_schema import Artifact, Role, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient


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


__all__ = ["close_sweep_run", "open_sweep_run"]
