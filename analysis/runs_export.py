"""The runs table ``spectral-sweep runs --csv`` writes, and the configs read back from it.

:func:`export_runs` puts the columns :func:`analysis.runs.load_runs_csv` reads first
(:data:`EXPORT_COLUMNS`: ``model, dataset, prune_rate, lrg, miou, gflops, annotation_nu_max``,
the ``r_ce_nu{K}`` points by band, ``seed, run_id`` and the architecture: ``backbone,
input_size, decoder_prune_rate, truncation, native_lrg, num_classes, spectrum_uri``), then the
run's state (``status, role, stopped_early``) and every ``tags.*``, ``params.*`` and ``metrics.*`` column of
the experiment. :func:`csv_configs` rebuilds each run's full
:class:`~trainables.config.TrialConfig` from the ``params.*`` columns (``run_schema.from_params``,
the one way back from MLflow's strings).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.runs import RUN_COLUMNS, point_columns
from trainables.errors import InputError
from trainables.run_schema import Artifact, Metric, Tag, r_ce_point_band

if TYPE_CHECKING:
    import pandas as pd

    from trainables.config import TrialConfig

#: The columns ``runs --csv`` writes first: the normalised frame's columns that a CSV carries
#: (what :func:`load_runs_csv` reads; ``r_ce`` is rebuilt from the ``r_ce_nu{K}`` points, which
#: come, by band, after ``annotation_nu_max``, and ``tracking_uri`` is the reader's), then the
#: run's state.
EXPORT_COLUMNS: tuple[str, ...] = (
    *(c for c in RUN_COLUMNS if c not in ("r_ce", "tracking_uri")),
    "status",
    "role",
    "stopped_early",
)


def export_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """An experiment's runs (``analysis.mlflow_runs.runs_frame``) as the table ``runs --csv``
    writes: :data:`EXPORT_COLUMNS` (with the ``r_ce_nu{K}`` points), then every other column
    (``run_name``, ``artifact_uri``, ``tags.*``, ``params.*``, ``metrics.*``; R_ce points by
    band). A run whose params are not a trial config (the analysis run) leaves the analysis
    columns blank."""
    import pandas as pd

    from trainables.run_schema import from_params

    records = []
    for run in runs.to_dict("records"):
        params = {
            str(k).removeprefix("params."): v
            for k, v in run.items()
            if str(k).startswith("params.") and isinstance(v, str)
        }
        record: dict[str, Any] = {"run_id": run.get("run_id"), "status": run.get("status")}
        record["role"] = _cell_text(run.get(f"tags.{Tag.ROLE}"))
        record["stopped_early"] = _cell_text(run.get(f"tags.{Tag.STOPPED_EARLY}"))
        try:
            cfg = from_params(params) if "model" in params else None
        except InputError:
            cfg = None
        if cfg is not None:
            record.update(
                model=cfg.model,
                dataset=cfg.dataset,
                prune_rate=cfg.prune_rate,
                lrg=cfg.effective_lrg,
                miou=run.get(f"metrics.{Metric.MIOU}"),
                gflops=run.get(f"metrics.{Metric.GFLOPS}"),
                annotation_nu_max=cfg.annotation_nu_max,
                seed=cfg.seed,
                backbone=cfg.backbone,
                input_size=cfg.input_size,
                decoder_prune_rate=cfg.decoder_prune_rate,
                truncation=cfg.truncation,
                native_lrg=cfg.native_lrg,
                num_classes=cfg.num_classes,
                spectrum_uri=f"{str(run.get('artifact_uri') or '').rstrip('/')}/"
                f"{Artifact.SPECTRUM_CSV}",
            )
            for key, value in run.items():
                name = str(key).removeprefix("metrics.")
                if str(key).startswith("metrics.") and r_ce_point_band(name) is not None:
                    record[name] = value
        records.append(record)
    front = pd.DataFrame(records)
    for column in EXPORT_COLUMNS:
        if column not in front:
            front[column] = None
    points = point_columns(front)
    head = [*EXPORT_COLUMNS[:7], *points, *EXPORT_COLUMNS[7:]]
    front = front[head]
    for column in ("lrg", "seed", "input_size", "native_lrg", "num_classes", "annotation_nu_max"):
        front[column] = front[column].astype("Int64")  # integers, blank when absent
    rest = [c for c in runs.columns if c not in ("run_id", "status")]
    metric_points = {c: r_ce_point_band(c.removeprefix("metrics.")) for c in rest}
    ordered = [c for c in rest if metric_points[c] is None or not c.startswith("metrics.")]
    ordered += sorted(
        (c for c in rest if c.startswith("metrics.") and metric_points[c] is not None),
        key=lambda c: metric_points[c] or 0,
    )
    return pd.concat([front, runs[ordered].reset_index(drop=True)], axis=1)


def _cell_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def csv_configs(path: str | Path) -> dict[str, TrialConfig]:
    """Each run's full :class:`TrialConfig` from the ``params.*`` columns of a runs CSV (as
    ``runs --csv`` writes it), by ``run_id``; empty when the CSV has no ``params.*`` columns.
    Rows whose params are not a trial config are left out."""
    import pandas as pd

    from trainables.run_schema import from_params

    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    columns = [c for c in raw.columns if str(c).startswith("params.")]
    if not columns or "run_id" not in raw.columns:
        return {}
    out: dict[str, TrialConfig] = {}
    for row in raw.to_dict("records"):
        params = {str(c).removeprefix("params."): row[c] for c in columns if row[c].strip()}
        if "model" not in params:
            continue
        try:
            out[str(row["run_id"]).strip()] = from_params(params)
        except InputError:
            continue
    return out


__all__ = ["EXPORT_COLUMNS", "csv_configs", "export_runs"]
