"""MLflow tracking for sweeps: one experiment per sweep, one run per trial (no Ray here).

The schema (tags, params, metric names, artifacts) is the project's contract with ``analysis``:

- experiment = sweep name; run name = trial id;
- tags ``spectral_sweep.{sweep,trial_id,space,strategy,role,config_key}`` (+ ``node_id`` /
  ``node_ip`` where the trial ran, and ``error`` / ``error_trace`` when it failed); the estimate
  strategy's predictions are runs with role ``prediction`` and ``reference_run_id``;
- params = every :class:`~trainables.config.TrialConfig` field (None as "None"), plus
  ``lrg_effective`` and ``native_lrg``;
- metrics = ``TrialReport.metrics`` per evaluation, step = epoch;
- artifacts ``spectrum.csv``, ``spectrum.png``, ``per_class_iou.json`` of the final evaluation;
  ``spectrum.csv`` is the report's spectrum frame as is, so it carries ``band_profile_init``
  (the profile at initialisation; NaN for trials resumed from checkpoints older than it).

During a sweep the only writer is the driver (:class:`orchestrator.tune.MlflowTrackingCallback`
calls these functions), so trials never contend on a SQLite file; writes still retry on
"database is locked" in case another process (a second sweep, the UI) holds the lock.
``log_trial_run`` logs a whole trial at once, for code that runs trials without Ray.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

TAG_PREFIX = "spectral_sweep."
TAG_SWEEP = TAG_PREFIX + "sweep"
TAG_TRIAL_ID = TAG_PREFIX + "trial_id"
TAG_SPACE = TAG_PREFIX + "space"
TAG_STRATEGY = TAG_PREFIX + "strategy"
TAG_ROLE = TAG_PREFIX + "role"
TAG_NODE_ID = TAG_PREFIX + "node_id"
TAG_NODE_IP = TAG_PREFIX + "node_ip"
TAG_ERROR = TAG_PREFIX + "error"
TAG_ERROR_TRACE = TAG_PREFIX + "error_trace"
TAG_CONFIG_KEY = TAG_PREFIX + "config_key"  # TrialConfig.key: same experiment, same key
TAG_REFERENCE_RUN = TAG_PREFIX + "reference_run_id"  # predictions and confirmations

STRATEGIES = ("exhaustive", "estimate")
ROLES = ("trial", "reference", "confirm", "prediction")

SPECTRUM_CSV = "spectrum.csv"
SPECTRUM_PNG = "spectrum.png"
PER_CLASS_IOU_JSON = "per_class_iou.json"

#: Params beyond the TrialConfig fields.
EXTRA_PARAMS = ("lrg_effective", "native_lrg")
_MAX_TAG_CHARS = 4000
T = TypeVar("T")


# --------------------------------------------------------------------- tracking URIs


def default_tracking_uri(directory: str | Path | None = None) -> str:
    """``sqlite:///<dir>/mlflow.db`` (absolute; ``dir`` defaults to the working directory)."""
    base = Path(directory) if directory is not None else Path.cwd()
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI to use: the flag, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite file."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute with four slashes), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest) if rest.startswith("/") else (Path.cwd() / rest).resolve()


def check_tracking_uri(uri: str, timeout: float = 3.0) -> None:
    """Fail fast (InputError) on a tracking URI the sweep could not write to.

    SQLite: the database's directory must exist and be writable. HTTP(S): ``GET /health``
    must answer within ``timeout`` seconds. Database URIs (postgresql, mysql, ...) are used
    as given.
    """
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "sqlite":
        db = sqlite_path(uri)
        if db is None:
            raise InputError(
                f"tracking URI {uri!r} names no database file; expected sqlite:///PATH/mlflow.db"
            )
        if not db.parent.is_dir():
            raise InputError(f"tracking URI {uri!r}: directory {db.parent} does not exist")
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise InputError(f"tracking URI {uri!r}: {db} is not writable")
    elif scheme in ("http", "https"):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout) as response:
                if response.status != 200:
                    raise InputError(f"tracking URI {uri!r}: {health} answered {response.status}")
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise InputError(
                f"tracking server {uri!r} is unreachable ({reason}); start it with `mlflow "
                "server --backend-store-uri sqlite:///PATH/mlflow.db --host HOST --port PORT`"
            ) from None
    elif scheme in ("", "file"):
        raise InputError(
            f"tracking URI {uri!r}: file stores are not supported; use sqlite:///PATH/mlflow.db "
            "or http://HOST:PORT"
        )


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    return f"open {uri} in a browser"


def is_local_uri(uri: str) -> bool:
    """Whether the store is a file on this machine (only the local node can write it)."""
    return uri.startswith("sqlite:")


# --------------------------------------------------------------------- client + retries


def quiet_mlflow_logs() -> None:
    """Silence MLflow's and alembic's INFO lines (database migrations) in the terminal."""
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` (creating the SQLite schema on first use)."""
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    return retry_locked(lambda: MlflowClient(tracking_uri=uri))


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


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store live beside it (``mlartifacts/<experiment>``); servers decide."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def ensure_experiment(client: MlflowClient, name: str, uri: str | None = None) -> str:
    """The id of experiment ``name``, created (or restored from deleted) if needed."""
    experiment = retry_locked(lambda: client.get_experiment_by_name(name))
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            retry_locked(lambda: client.restore_experiment(experiment.experiment_id))
        return str(experiment.experiment_id)
    location = artifact_location(uri, name) if uri else None
    try:
        return str(retry_locked(lambda: client.create_experiment(name, artifact_location=location)))
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


def find_trial_run(client: MlflowClient, experiment_id: str, trial_id: str) -> Run | None:
    """The run of ``trial_id`` in the experiment, if one exists (newest first)."""
    runs = retry_locked(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
            max_results=1,
        )
    )
    return runs[0] if runs else None


def find_config_run(
    client: MlflowClient, experiment_id: str, config_key: str, role: str
) -> Run | None:
    """The newest run of a configuration (``TrialConfig.key``) in one role, if any."""
    runs = retry_locked(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`{TAG_CONFIG_KEY}` = '{config_key}' and tags.`{TAG_ROLE}` = '{role}'"
            ),
            max_results=1,
            order_by=["start_time DESC"],
        )
    )
    return runs[0] if runs else None


def log_prediction_run(
    client: MlflowClient,
    experiment_id: str,
    config: Mapping[str, Any],
    predicted: Mapping[str, float],
    tags: Mapping[str, str],
) -> str:
    """Record a configuration that was predicted, not trained, as a FINISHED run.

    Params are the trial config (as for a trained run), metrics the prediction
    (``predicted_drop``, ``predicted_miou``, ``predicted_fpi``, ``gflops``, ``r_ce``, ...),
    tags role ``prediction`` and the configuration key. A configuration that already has a
    prediction run keeps it (a resumed strategy logs nothing twice); returns the run id.
    """
    from trainables.config import TrialConfig

    key = TrialConfig.from_dict(config).key
    existing = find_config_run(client, experiment_id, key, "prediction")
    if existing is not None:
        return str(existing.info.run_id)
    all_tags = {**tags, TAG_ROLE: "prediction", TAG_CONFIG_KEY: key}
    run = retry_locked(
        lambda: client.create_run(experiment_id, tags=dict(all_tags), run_name=f"predict-{key}")
    )
    run_id = str(run.info.run_id)
    log_params(client, run_id, trial_params(config))
    finite = {k: float(v) for k, v in predicted.items() if math.isfinite(float(v))}
    log_metrics(client, run_id, finite, step=0)
    end_trial_run(client, run_id, "FINISHED")
    return run_id


def log_plan_artifact(
    client: MlflowClient, run_id: str, plan: Mapping[str, Any], name: str
) -> None:
    """Attach a plan (JSON-ready dict) to the reference run it was predicted from."""
    retry_locked(lambda: client.log_dict(run_id, dict(plan), name))


# --------------------------------------------------------------------- params / metrics


def trial_params(config: Mapping[str, Any], native_lrg: int | None = None) -> dict[str, str]:
    """Every TrialConfig field as a string (None -> "None"), plus lrg_effective and native_lrg."""
    from trainables.config import TrialConfig, native_grid_size

    cfg = TrialConfig.from_dict(config)
    params = {k: _param_text(v) for k, v in cfg.to_dict().items()}
    native = native_lrg if native_lrg is not None else native_grid_size(cfg.input_size)
    params["native_lrg"] = str(native)
    params["lrg_effective"] = str(cfg.lrg if cfg.lrg is not None else native)
    return params


def _param_text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def numeric_metrics(values: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, float]:
    """The numeric (non-bool) entries of ``values``, as floats."""
    skip = set(exclude)
    return {
        k: float(v)
        for k, v in values.items()
        if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
    }


# --------------------------------------------------------------------- run lifecycle


def start_trial_run(
    client: MlflowClient,
    experiment_id: str,
    trial_id: str,
    config: Mapping[str, Any],
    tags: Mapping[str, str],
) -> tuple[str, bool]:
    """Open (or re-open) the run of a trial; returns ``(run_id, already_finished)``.

    A trial that already has a run (a resumed sweep, a retried trial) gets that run back,
    set RUNNING again unless it FINISHED; a finished run is left untouched.
    """
    existing = find_trial_run(client, experiment_id, trial_id)
    if existing is not None:
        run_id = existing.info.run_id
        if existing.info.status == "FINISHED":
            return run_id, True
        if existing.info.status != "RUNNING":
            retry_locked(lambda: client.update_run(run_id, status="RUNNING"))
        for key in (TAG_ERROR, TAG_ERROR_TRACE):  # a restarted failure starts clean
            if key in existing.data.tags:
                retry_locked(lambda key=key: client.delete_tag(run_id, key))  # type: ignore[misc]
        return run_id, False
    from trainables.config import TrialConfig

    key = TrialConfig.from_dict(config).key
    all_tags = {**tags, TAG_TRIAL_ID: trial_id, TAG_CONFIG_KEY: key}
    run = retry_locked(
        lambda: client.create_run(experiment_id, tags=dict(all_tags), run_name=trial_id)
    )
    log_params(client, run.info.run_id, trial_params(config))
    return run.info.run_id, False


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches of at most 100 (MLflow's limit)."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        chunk = items[i : i + 100]
        retry_locked(lambda chunk=chunk: client.log_batch(run_id, params=chunk))  # type: ignore[misc]


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Log one evaluation's metrics at ``step`` (the epoch)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        chunk = items[i : i + 1000]
        retry_locked(lambda chunk=chunk: client.log_batch(run_id, metrics=chunk))  # type: ignore[misc]


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set several tags at once."""
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in tags.items()]
    if items:
        retry_locked(lambda: client.log_batch(run_id, tags=items))


def log_trial_artifacts(client: MlflowClient, run_id: str, directory: str | Path) -> list[str]:
    """Log spectrum.csv, per_class_iou.json (those present) and a spectrum.png drawn from the CSV."""
    directory = Path(directory)
    logged = []
    for name in (SPECTRUM_CSV, PER_CLASS_IOU_JSON):
        path = directory / name
        if path.exists():
            retry_locked(lambda path=path: client.log_artifact(run_id, str(path)))  # type: ignore[misc]
            logged.append(name)
    csv = directory / SPECTRUM_CSV
    if csv.exists():
        import tempfile

        import pandas as pd

        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / SPECTRUM_PNG
            plot_spectrum(pd.read_csv(csv), png)
            retry_locked(lambda: client.log_artifact(run_id, str(png)))
            logged.append(SPECTRUM_PNG)
    return logged


def end_trial_run(
    client: MlflowClient, run_id: str, status: str = "FINISHED", error: str | None = None
) -> None:
    """Close a trial's run; a failure keeps its error text as tags."""
    if error:
        set_tags(client, run_id, error_tags(error))
    retry_locked(lambda: client.set_terminated(run_id, status=status))


def error_tags(error: str) -> dict[str, str]:
    """``error`` = the last non-empty line (the exception), ``error_trace`` = the tail."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "unknown error"
    return {TAG_ERROR: last[:_MAX_TAG_CHARS], TAG_ERROR_TRACE: error.strip()[-_MAX_TAG_CHARS:]}


def sweep_tags(
    sweep: str, space: str, strategy: str = "exhaustive", role: str = "trial"
) -> dict[str, str]:
    """The tags every run of a sweep carries."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return {TAG_SWEEP: sweep, TAG_SPACE: space, TAG_STRATEGY: strategy, TAG_ROLE: role}


def log_trial_run(
    tracking_uri: str,
    experiment: str,
    trial_id: str,
    config: Mapping[str, Any],
    reports: Sequence[Any],
    *,
    tags: Mapping[str, str],
    status: str = "FINISHED",
    error: str | None = None,
) -> str:
    """Log one whole trial (its ``TrialReport`` list) as a run, without Ray; returns the run id.

    For trials run outside Tune (the estimate strategy's reference and confirmation runs).
    A trial id that already has a FINISHED run is not logged again.
    """
    import tempfile

    client = make_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment, tracking_uri)
    run_id, finished = start_trial_run(client, experiment_id, trial_id, config, tags)
    if finished:
        return run_id
    for report in reports:
        log_metrics(client, run_id, numeric_metrics(report.metrics), step=int(report.epoch))
    if reports:
        last = reports[-1]
        with tempfile.TemporaryDirectory() as tmp:
            write_trial_artifacts(tmp, last.spectrum, last.per_class_iou)
            log_trial_artifacts(client, run_id, tmp)
    end_trial_run(client, run_id, status=status, error=error)
    return run_id


# --------------------------------------------------------------------- artifacts


def write_trial_artifacts(
    directory: str | Path, spectrum: pd.DataFrame | None, per_class_iou: Sequence[float]
) -> None:
    """Write ``spectrum.csv`` and ``per_class_iou.json`` (NaN -> null) into ``directory``.

    ``spectrum.csv`` keeps every column of ``spectrum`` (``band_profile_init`` included; its NaN
    bands are written empty and read back as NaN).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if spectrum is not None:
        spectrum.to_csv(directory / SPECTRUM_CSV, index=False)
    values = [None if not math.isfinite(float(v)) else float(v) for v in per_class_iou]
    (directory / PER_CLASS_IOU_JSON).write_text(json.dumps(values) + "\n", encoding="utf-8")


def plot_spectrum(frame: pd.DataFrame, path: str | Path) -> None:
    """Two panels: R_ce(nu_max) over the band k, and the normalised |b[k]| and |yhat[k]|."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    k = frame["k"]
    left.plot(k, frame["r_ce"], marker=".", color="tab:red")
    left.set_xlabel("band limit nu_max (k)")
    left.set_ylabel("R_ce(nu_max)")
    left.set_title("relative CE lost by truncation")
    left.grid(alpha=0.3)
    for column, label in (
        ("label_magnitude_norm", "|b[k]| (labels)"),
        ("pred_magnitude_norm", "|yhat[k]| (prediction)"),
    ):
        if column in frame:
            right.plot(k, frame[column], label=label)
    right.set_xlabel("band k")
    right.set_ylabel("normalised magnitude")
    right.set_yscale("log")
    right.set_title("spectra (Fig. 1)")
    right.legend()
    right.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------- reading runs


def runs_frame(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """All runs of an experiment as one row each: ``run_id``, ``run_name``, ``status``,
    ``tags.*``, ``params.*``, ``metrics.*`` (latest values), like ``mlflow.search_runs``.

    Unknown experiment -> InputError; an empty experiment gives an empty frame.
    """
    import pandas as pd

    client = make_client(tracking_uri)
    experiment_id = find_experiment(client, experiment)
    if experiment_id is None:
        names = [e.name for e in client.search_experiments()]
        raise InputError(
            f"no experiment {experiment!r} at {tracking_uri}; experiments: "
            f"{', '.join(sorted(names)) or '(none)'}"
        )
    rows: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = retry_locked(
            lambda token=token: client.search_runs(  # type: ignore[misc]
                [experiment_id], max_results=1000, page_token=token, order_by=["start_time ASC"]
            )
        )
        for run in page:
            row: dict[str, Any] = {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
            }
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)
