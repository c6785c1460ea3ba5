"""The trial runs of an MLflow experiment -> the normalised runs table (``analysis.runs``).

Read through ``analysis.mlflow_runs.runs_frame`` (an explicit ``MlflowClient``); each run's params
become its :class:`~trainables.config.TrialConfig` through ``run_schema.from_params``, the one
way back from MLflow's strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from analysis.mlflow_runs import runs_frame
from analysis.runs import STOPPED_NOTE, UNFINISHED_NOTE, is_nan, leave_out, normalise
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import (
    UNTRAINED_ROLES,
    Artifact,
    Metric,
    Tag,
    from_params,
    r_ce_point_band,
)

if TYPE_CHECKING:
    import pandas as pd


def load_runs_mlflow(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """The finished trial runs of an MLflow experiment as the normalised frame.

    Reads the runs' params (as their TrialConfig: model, dataset, prune rate, effective grid,
    annotation_nu_max, seed and context), metrics ``miou, gflops, r_ce_nu{K}`` (latest values),
    and points ``spectrum_uri`` at each run's ``spectrum.csv`` artifact. Runs whose
    ``spectral_sweep.role`` is ``analysis`` or ``prediction`` (nothing trained) and runs without
    a ``model`` param are skipped; unfinished runs and runs the scheduler stopped early (tag
    ``stopped_early``) are left out with a warning that counts them. An unknown or
    empty experiment is an InputError.
    """
    import pandas as pd

    runs = runs_frame(tracking_uri, experiment)
    where = f"experiment {experiment!r}"
    if runs.empty:
        raise InputError(f"{where} at {tracking_uri} has no runs")
    role = runs.get(f"tags.{Tag.ROLE}", pd.Series([None] * len(runs), index=runs.index))
    model = runs.get("params.model", pd.Series([None] * len(runs), index=runs.index))
    trials = runs.loc[~role.astype(object).isin(UNTRAINED_ROLES) & model.notna()]
    trials = leave_out(trials, trials["status"] != "FINISHED", where, UNFINISHED_NOTE)
    stopped = trials.get(f"tags.{Tag.STOPPED_EARLY}", pd.Series([None] * len(trials))) == "true"
    stopped = stopped.reindex(trials.index, fill_value=False).astype(bool)
    trials = leave_out(trials, stopped, where, STOPPED_NOTE)
    if trials.empty:
        raise InputError(f"{where} at {tracking_uri} has no finished trial runs")
    frame = pd.DataFrame(
        [_mlflow_row(row, tracking_uri) for row in trials.to_dict("records")], index=None
    )
    return normalise(frame, source=where)


def run_params(run: Mapping[str, Any]) -> dict[str, Any]:
    """The ``params.*`` entries of a ``runs_frame`` row, without the prefix (unset ones out)."""
    return {
        str(k).removeprefix("params."): v
        for k, v in run.items()
        if str(k).startswith("params.") and v is not None and not is_nan(v)
    }


def run_config(run: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of a ``runs_frame`` row; a bad param is an InputError naming the run."""
    try:
        return from_params(run_params(run))
    except InputError as err:
        raise InputError(f"run {run['run_id']}: {err}") from None


def _mlflow_row(run: Mapping[str, Any], tracking_uri: str) -> dict[str, Any]:
    """One runs_frame row -> the normalised row's values."""
    cfg = run_config(run)
    nan = math.nan
    row: dict[str, Any] = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "prune_rate": cfg.prune_rate,
        "lrg": cfg.effective_lrg,
        "miou": run.get(f"metrics.{Metric.MIOU}", nan),
        "gflops": _number(run.get(f"metrics.{Metric.GFLOPS}"), Metric.GFLOPS, str(run["run_id"])),
        "annotation_nu_max": nan if cfg.annotation_nu_max is None else cfg.annotation_nu_max,
        "seed": cfg.seed,
        "run_id": str(run["run_id"]),
        "backbone": cfg.backbone,
        "input_size": cfg.input_size,
        "decoder_prune_rate": cfg.decoder_prune_rate,
        "truncation": cfg.truncation,
        "native_lrg": cfg.native_lrg,
        "num_classes": nan if cfg.num_classes is None else cfg.num_classes,
        "spectrum_uri": f"{str(run['artifact_uri']).rstrip('/')}/{Artifact.SPECTRUM_CSV}",
        "tracking_uri": tracking_uri,
    }
    for key, value in run.items():
        name = str(key).removeprefix("metrics.")
        if str(key).startswith("metrics.") and r_ce_point_band(name) is not None:
            row[name] = value
    return row


def _number(value: Any, name: str, run_id: str) -> float:
    """A metric as float; None -> NaN; text -> InputError naming the run."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"run {run_id}: {name} = {value!r} is not a number") from None


__all__ = ["load_runs_mlflow", "run_config", "run_params"]
