"""The one MLflow reader: an experiment's runs as a DataFrame, on an explicit ``MlflowClient``.

No global tracking-URI state (no ``mlflow.set_tracking_uri``) and no private MLflow modules: a
client is made for the URI it is given. ``orchestrator`` (the ``runs`` command, the demo) and
``analysis`` (loading trial runs, reference runs) both read through :func:`runs_frame`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

#: Loggers whose INFO lines (schema migrations on first open) are noise in a terminal.
_NOISY_LOGGERS = ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent")


def quiet_mlflow_logs() -> None:
    """Silence MLflow's and alembic's INFO lines (database migrations) in the terminal."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def client_for(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` on ``tracking_uri``, quietly. On a SQLite file the client is made
    (which opens the store and creates or upgrades its schema) under a file lock
    (``<db>.lock``): two sweeps opening one new store at once would otherwise race on it
    ("duplicate column", "index ... already exists"). A new SQLite file starts from the cached
    empty schema (:mod:`analysis.mlflow_schema`) rather than MLflow's migrations."""
    from mlflow import MlflowClient

    from analysis.mlflow_schema import seed_store

    quiet_mlflow_logs()
    database = _sqlite_file(tracking_uri)
    if database is None:
        return MlflowClient(tracking_uri=tracking_uri)
    with _locked(database.with_name(database.name + ".lock")):
        seed_store(database)
        return MlflowClient(tracking_uri=tracking_uri)  # opening the store creates the schema


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (whose folder exists), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    path = Path(rest if rest.startswith("/") else Path.cwd() / rest)
    return path if path.parent.is_dir() else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) for the ``with`` block, across processes."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def experiment_id(client: MlflowClient, tracking_uri: str, experiment: str) -> str:
    """The id of an active experiment; an unknown name is an InputError listing the names."""
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        raise InputError(
            f"no experiment {experiment!r} at {tracking_uri}; experiments: "
            f"{', '.join(names) or '(none)'}"
        )
    return str(found.experiment_id)


def runs_frame(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """All runs of an experiment, oldest first, one row each, columns as ``mlflow.search_runs``
    names them: ``run_id``, ``run_name``, ``status``, ``artifact_uri``, ``start_time``,
    ``tags.*``, ``params.*``, ``metrics.*`` (latest values).

    An unknown experiment is an InputError; an empty one gives an empty frame.
    """
    import pandas as pd

    client = client_for(tracking_uri)
    exp_id = experiment_id(client, tracking_uri, experiment)
    rows: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [exp_id], max_results=1000, page_token=token, order_by=["start_time ASC"]
        )
        rows.extend(_row(run) for run in page)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)


def _row(run: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "artifact_uri": run.info.artifact_uri,
        "start_time": run.info.start_time,
    }
    row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
    row.update({f"params.{k}": v for k, v in run.data.params.items()})
    row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
    return row


__all__ = ["client_for", "experiment_id", "quiet_mlflow_logs", "runs_frame"]
