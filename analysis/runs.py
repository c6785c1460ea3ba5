"""Runs in: a CSV table or an MLflow experiment -> one normalised DataFrame, plus R_ce curves.

Every loader returns the same columns (:data:`RUN_COLUMNS`), one row per run:

- ``model, dataset`` (str), ``prune_rate`` (float), ``lrg`` (int, the effective grid size),
  ``miou`` (fraction), ``gflops``;
- ``annotation_nu_max`` (float, NaN = pixel-wise labels), ``r_ce`` (float, the row's own
  regressor when the input gives it, else NaN), ``seed`` (float, NaN when unknown), ``run_id``;
- optional context (NaN/None when unknown): ``backbone, input_size, decoder_prune_rate,
  truncation, native_lrg, num_classes``; ``spectrum_uri`` and ``tracking_uri`` locate the run's
  ``spectrum.csv`` (the full R_ce curve over k); ``r_ce_nu{K}`` columns carry R_ce points.

Rows whose mIoU is NaN are counted and left out with one warning. :func:`spectrum_curve` reads a
run's ``spectrum.csv`` and :func:`points_curve` its ``r_ce_nu{K}`` columns.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: Columns a runs CSV must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("model", "dataset", "prune_rate", "lrg", "miou", "gflops")
#: Optional numeric CSV columns (blank = unknown).
OPTIONAL_NUMERIC: tuple[str, ...] = (
    "annotation_nu_max",
    "r_ce",
    "seed",
    "input_size",
    "decoder_prune_rate",
    "native_lrg",
    "num_classes",
)
#: Optional text columns.
OPTIONAL_TEXT: tuple[str, ...] = ("backbone", "truncation", "run_id", "spectrum_csv")
#: The normalised frame's columns (``r_ce_nu{K}`` columns come after them when present).
RUN_COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "prune_rate",
    "lrg",
    "miou",
    "gflops",
    "annotation_nu_max",
    "r_ce",
    "seed",
    "run_id",
    "backbone",
    "input_size",
    "decoder_prune_rate",
    "truncation",
    "native_lrg",
    "num_classes",
    "spectrum_uri",
    "tracking_uri",
)
#: Context columns that split groups when they take more than one value in a sweep.
CONTEXT_KEYS: tuple[str, ...] = ("backbone", "input_size", "decoder_prune_rate", "truncation")
#: Name of the per-run spectrum artifact (contract: SpectrumAccumulator.to_frame()).
SPECTRUM_CSV = "spectrum.csv"
#: Its optional column: the band profile at initialisation (contract:
#: ``trainables.trial.INIT_PROFILE_COLUMN``; absent in files written before it existed).
INIT_PROFILE_COLUMN = "band_profile_init"
#: Tag that marks a run's role; analysis runs are skipped when reading trials.
ROLE_TAG = "spectral_sweep.role"
ANALYSIS_ROLE = "analysis"
#: Runs that trained nothing: an analysis, and the estimate strategy's predictions.
UNTRAINED_ROLES = (ANALYSIS_ROLE, "prediction")

_POINT_COLUMN = re.compile(r"^r_ce_nu(\d+)$")


class AnalysisWarning(UserWarning):
    """Something in the runs was left out or guessed; the analysis goes on."""


def warn(message: str) -> None:
    """One-line warning about the input (rows left out, groups without a reference)."""
    warnings.warn(message, AnalysisWarning, stacklevel=3)


# --------------------------------------------------------------------- CSV


def load_runs_csv(path: str | Path) -> pd.DataFrame:
    """Read a runs table (one row per run) and normalise it.

    Required columns: ``model, dataset, prune_rate, lrg, miou, gflops``; optional
    ``annotation_nu_max`` (blank = pixel-wise), ``r_ce`` (the row's regressor), ``seed``,
    ``r_ce_nu{K}`` (R_ce points of the row's own spectrum), ``spectrum_csv`` (path to the run's
    spectrum.csv, relative to the CSV's folder) and the context columns. Bad input raises
    :class:`InputError` naming the column (and the line for bad values).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"runs CSV {str(path)!r} does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"runs CSV {str(path)!r} is not a readable CSV table ({first})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(
            f"runs CSV {str(path)!r} lacks column(s) {', '.join(missing)}; required: "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    if raw.empty:
        raise InputError(f"runs CSV {str(path)!r} has no rows")
    frame = pd.DataFrame(
        {"model": _text(raw, "model", path), "dataset": _text(raw, "dataset", path)}
    )
    points = [c for c in raw.columns if _POINT_COLUMN.match(c)]
    for column in ("prune_rate", "lrg", "miou", "gflops", *OPTIONAL_NUMERIC, *points):
        if column in raw.columns:
            frame[column] = _numbers(raw, column, path, required=column in REQUIRED_COLUMNS)
    for column in ("backbone", "truncation", "run_id"):
        if column in raw.columns:
            frame[column] = [v.strip() or None for v in raw[column]]
    ids = list(frame["run_id"]) if "run_id" in frame else [None] * len(raw)
    frame["run_id"] = [v or f"{path.name}:{i + 2}" for i, v in enumerate(ids)]
    if "native_lrg" not in frame:
        frame["native_lrg"] = _native_from_rows(frame)
    if "spectrum_csv" in raw.columns:
        frame["spectrum_uri"] = [
            str((path.parent / v.strip()).resolve()) if v.strip() else None
            for v in raw["spectrum_csv"]
        ]
    _check_values(frame, path, line_offset=2)
    return normalise(frame, source=str(path))


def _text(raw: pd.DataFrame, column: str, path: Path) -> list[str]:
    values = [v.strip() for v in raw[column]]
    for i, value in enumerate(values):
        if not value:
            raise InputError(f"runs CSV {str(path)!r}: line {i + 2}, column {column!r} is empty")
    return values


def _numbers(raw: pd.DataFrame, column: str, path: Path, required: bool) -> list[float]:
    """Parse one column as floats; blank/NaN -> NaN; anything else names line and column."""
    out: list[float] = []
    for i, text in enumerate(raw[column]):
        value = text.strip()
        if value == "" or value.lower() in ("nan", "none", "null", "na"):
            if required and column != "miou":
                raise InputError(
                    f"runs CSV {str(path)!r}: line {i + 2}, column {column!r} is empty; "
                    "expected a number"
                )
            out.append(math.nan)
            continue
        try:
            out.append(float(value))
        except ValueError:
            raise InputError(
                f"runs CSV {str(path)!r}: line {i + 2}, column {column!r}: {value!r} is not a number"
            ) from None
    return out


def _native_from_rows(frame: pd.DataFrame) -> list[float]:
    """Without a ``native_lrg`` column: the largest LRG of each (model, dataset[, input_size,
    backbone]), NaN-mIoU rows included, so a reference lost to NaN is noticed later."""
    keys = ["model", "dataset", *[c for c in ("input_size", "backbone") if c in frame]]
    native = frame.groupby(keys, dropna=False)["lrg"].transform("max")
    return [float(v) for v in native]


def _check_values(frame: pd.DataFrame, path: Path, line_offset: int) -> None:
    """Range checks that name the line: mIoU a fraction, LRG a positive integer, ..."""
    where = f"runs CSV {str(path)!r}"
    for i, row in enumerate(frame.itertuples(index=False)):
        line = i + line_offset
        miou = float(row.miou)
        if not math.isnan(miou) and not 0.0 <= miou <= 1.0:
            raise InputError(
                f"{where}: line {line}, column 'miou': {miou:g} is not a fraction in [0, 1] "
                "(percent? divide by 100)"
            )
        lrg = float(row.lrg)
        if not (lrg >= 1 and lrg == int(lrg)):
            raise InputError(f"{where}: line {line}, column 'lrg': {lrg:g} is not a grid size >= 1")
        if not float(row.gflops) > 0:
            raise InputError(f"{where}: line {line}, column 'gflops': {row.gflops:g} is not > 0")
        if not 0.0 <= float(row.prune_rate) < 1.0:
            raise InputError(
                f"{where}: line {line}, column 'prune_rate': {row.prune_rate:g} is not in [0, 1)"
            )


# --------------------------------------------------------------------- normalising


def normalise(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Give ``frame`` every column of :data:`RUN_COLUMNS` with its dtype; drop NaN-mIoU rows."""
    import numpy as np
    import pandas as pd

    out = frame.copy()
    for column in RUN_COLUMNS:
        if column not in out:
            numeric = column not in ("backbone", "truncation", "spectrum_uri", "tracking_uri")
            out[column] = np.nan if numeric else None
    for column in ("model", "dataset", "run_id"):
        out[column] = out[column].astype(str)
    for column in ("backbone", "truncation", "spectrum_uri", "tracking_uri"):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    floats = [
        c
        for c in out.columns
        if c in OPTIONAL_NUMERIC or c in ("prune_rate", "miou", "gflops") or _POINT_COLUMN.match(c)
    ]
    for column in floats:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out["lrg"] = pd.to_numeric(out["lrg"]).astype(int)
    nan = out["miou"].isna()
    if nan.any():
        warn(f"{source}: {int(nan.sum())} run(s) with NaN mIoU left out")
        out = out.loc[~nan]
    points = sorted((c for c in out.columns if _POINT_COLUMN.match(c)), key=_point_band)
    return out[[*RUN_COLUMNS, *points]].reset_index(drop=True)


def _point_band(column: str) -> int:
    match = _POINT_COLUMN.match(column)
    return int(match.group(1)) if match else -1


def point_columns(frame: pd.DataFrame) -> list[str]:
    """The ``r_ce_nu{K}`` columns of a frame, by band."""
    return sorted((c for c in frame.columns if _POINT_COLUMN.match(c)), key=_point_band)


def points_curve(row: Mapping[str, Any]) -> dict[int, float]:
    """R_ce points ``{nu: r_ce}`` from a row's ``r_ce_nu{K}`` entries (NaN ones skipped)."""
    out: dict[int, float] = {}
    for key, value in row.items():
        match = _POINT_COLUMN.match(str(key))
        if match and value is not None and not _isnan(value):
            out[int(match.group(1))] = float(value)
    return out


def _isnan_float(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


# --------------------------------------------------------------------- MLflow


@contextlib.contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.search_runs``) at ``uri`` for a block, then restore
    the previous URI and ``MLFLOW_TRACKING_URI``."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous = utils._tracking_uri
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(cast(Any, previous))  # None restores the default
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def quiet_mlflow() -> None:
    """Silence MLflow's and alembic's INFO lines (schema migrations on first open)."""
    import logging

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def experiment_id(tracking_uri: str, experiment: str) -> str:
    """The id of an active experiment; an unknown name is an InputError listing the names."""
    from mlflow import MlflowClient

    quiet_mlflow()
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        raise InputError(
            f"no experiment {experiment!r} at {tracking_uri}; experiments: "
            f"{', '.join(names) or '(none)'}"
        )
    return str(found.experiment_id)


def search_runs_frame(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """``mlflow.search_runs`` over one experiment (all columns, oldest first)."""
    import mlflow

    exp_id = experiment_id(tracking_uri, experiment)
    with use_tracking_uri(tracking_uri):
        runs = mlflow.search_runs(experiment_ids=[exp_id], order_by=["start_time ASC"])
    return runs


def load_runs_mlflow(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """The finished trial runs of an MLflow experiment as the normalised frame.

    Reads params ``model, dataset, prune_rate, lrg_effective (or lrg/native_lrg),
    annotation_nu_max, seed`` and context, metrics ``miou, gflops, r_ce_nu{K}`` (latest values),
    and points ``spectrum_uri`` at each run's ``spectrum.csv`` artifact. Runs whose
    ``spectral_sweep.role`` is ``analysis`` or ``prediction`` (nothing trained) and runs without
    a ``model`` param are skipped; unfinished runs are left out with a warning. An unknown or
    empty experiment is an InputError.
    """
    import pandas as pd

    runs = search_runs_frame(tracking_uri, experiment)
    where = f"experiment {experiment!r}"
    if runs.empty:
        raise InputError(f"{where} at {tracking_uri} has no runs")
    role = runs.get(f"tags.{ROLE_TAG}", pd.Series([None] * len(runs), index=runs.index))
    model = runs.get("params.model", pd.Series([None] * len(runs), index=runs.index))
    trials = runs.loc[~role.astype(object).isin(UNTRAINED_ROLES) & model.notna()]
    unfinished = trials["status"] != "FINISHED"
    if unfinished.any():
        warn(f"{where}: {int(unfinished.sum())} unfinished run(s) (running or failed) left out")
        trials = trials.loc[~unfinished]
    if trials.empty:
        raise InputError(f"{where} at {tracking_uri} has no finished trial runs")
    frame = pd.DataFrame(
        [_mlflow_row(row, tracking_uri) for row in trials.to_dict("records")], index=None
    )
    return normalise(frame, source=where)


def _mlflow_row(run: Mapping[str, Any], tracking_uri: str) -> dict[str, Any]:
    """One search_runs row -> the normalised row's values."""
    run_id = str(run["run_id"])

    def param(name: str) -> Any:
        value = run.get(f"params.{name}")
        if value is None or str(value) in ("None", "nan") or _isnan_float(value):
            return None
        return value

    row: dict[str, Any] = {
        "model": param("model"),
        "dataset": param("dataset"),
        "prune_rate": _number(param("prune_rate"), "prune_rate", run_id, default=0.0),
        "lrg": _run_lrg(run, run_id),
        "miou": run.get("metrics.miou", math.nan),
        "gflops": _number(run.get("metrics.gflops"), "gflops", run_id),
        "annotation_nu_max": _number(param("annotation_nu_max"), "annotation_nu_max", run_id),
        "seed": _number(param("seed"), "seed", run_id),
        "run_id": run_id,
        "backbone": param("backbone"),
        "input_size": _number(param("input_size"), "input_size", run_id),
        "decoder_prune_rate": _number(param("decoder_prune_rate"), "decoder_prune_rate", run_id),
        "truncation": param("truncation"),
        "native_lrg": _number(param("native_lrg"), "native_lrg", run_id),
        "num_classes": _number(param("num_classes"), "num_classes", run_id),
        "spectrum_uri": f"{str(run['artifact_uri']).rstrip('/')}/{SPECTRUM_CSV}",
        "tracking_uri": tracking_uri,
    }
    for key, value in run.items():
        if _POINT_COLUMN.match(str(key).removeprefix("metrics.")) and str(key).startswith(
            "metrics."
        ):
            row[str(key).removeprefix("metrics.")] = value
    return row


def _number(value: Any, name: str, run_id: str, default: float = math.nan) -> float:
    """A param/metric as float; None/"None" -> ``default``; text -> InputError naming the run."""
    if value is None or str(value).strip() in ("", "None", "none", "null"):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"run {run_id}: {name} = {value!r} is not a number") from None


def _run_lrg(run: Mapping[str, Any], run_id: str) -> int:
    """The effective grid: ``lrg_effective``, else ``lrg``, else ``native_lrg`` (lrg None)."""
    for name in ("lrg_effective", "lrg", "native_lrg"):
        value = _number(run.get(f"params.{name}"), name, run_id)
        if not math.isnan(value):
            return int(value)
    raise InputError(f"run {run_id} has no lrg_effective, lrg or native_lrg param")


# --------------------------------------------------------------------- spectra


def read_spectrum(uri: str | None, tracking_uri: str | None = None) -> pd.DataFrame | None:
    """A run's ``spectrum.csv`` (columns ``k, r_ce, ...``) from a path or artifact URI.

    ``band_profile_init`` is optional: files written before it load as they are, without it.
    Returns None when there is none (no artifact, unreadable, or without ``k``/``r_ce``).
    """
    import pandas as pd

    if not uri:
        return None
    try:
        if "://" not in uri and ":/" not in uri:
            local = Path(uri)
            return _valid_spectrum(pd.read_csv(local)) if local.is_file() else None
        if uri.startswith("file:"):
            from urllib.parse import unquote, urlparse

            local = Path(unquote(urlparse(uri).path))
            return _valid_spectrum(pd.read_csv(local)) if local.is_file() else None
        import mlflow.artifacts

        quiet_mlflow()
        with tempfile.TemporaryDirectory() as tmp:
            got = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
            )
            return _valid_spectrum(pd.read_csv(got))
    except Exception:  # a missing artifact is normal (failed runs, CSV inputs)
        return None


def _valid_spectrum(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Sorted by ``k``; ``band_profile_init``, when present, as floats (blank -> NaN)."""
    import pandas as pd

    if "k" not in frame or "r_ce" not in frame or frame.empty:
        return None
    if INIT_PROFILE_COLUMN in frame:
        frame[INIT_PROFILE_COLUMN] = pd.to_numeric(frame[INIT_PROFILE_COLUMN], errors="coerce")
    return frame.sort_values("k").reset_index(drop=True)


def spectrum_curve(spectrum: pd.DataFrame) -> dict[int, float]:
    """``{k: R_ce(k)}`` of a spectrum frame."""
    return {
        int(k): float(r)
        for k, r in zip(spectrum["k"], spectrum["r_ce"], strict=True)
        if not _isnan(r)
    }


def mean_spectrum(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    """Average several spectra (repeats of one configuration) band by band."""
    import pandas as pd

    if not frames:
        return None
    if len(frames) == 1:
        return frames[0]
    stacked = pd.concat(frames, ignore_index=True)
    numeric = stacked.select_dtypes("number")
    return numeric.groupby("k", as_index=False).mean().sort_values("k").reset_index(drop=True)
