"""The runs table: its normalised columns, and a CSV file of runs read into it.

Every loader (:func:`load_runs_csv` here, ``analysis.mlflow_trials.load_runs_mlflow``) returns
the same columns (:data:`RUN_COLUMNS`), one row per run:

- ``model, dataset`` (str), ``prune_rate`` (float), ``lrg`` (int, the effective grid size),
  ``miou`` (fraction), ``gflops``;
- ``annotation_nu_max`` (float, NaN = pixel-wise labels), ``r_ce`` (float, the row's own
  regressor when the input gives it, else NaN), ``seed`` (float, NaN when unknown), ``run_id``;
- optional context (NaN/None when unknown): ``backbone, input_size, decoder_prune_rate,
  truncation, native_lrg, num_classes``; ``spectrum_uri`` and ``tracking_uri`` locate the run's
  ``spectrum.csv`` (the full R_ce curve over k); ``r_ce_nu{K}`` columns carry R_ce points.

Rows whose mIoU is NaN are counted and left out with one warning (:func:`normalise`).
``analysis.spectra`` reads the curves.

``spectral-sweep runs --csv`` writes ``analysis.runs_export.export_runs``: these columns first
(plus ``status``, ``role`` and ``stopped_early``), then every ``tags.*``, ``params.*`` and
``metrics.*`` column, so :func:`load_runs_csv` reads it back as it is (extra columns are ignored;
untrained, unfinished and stopped-early runs are left out, as from MLflow).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import InputError
from trainables.run_schema import UNTRAINED_ROLES, r_ce_point_band

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


class AnalysisWarning(UserWarning):
    """Something in the runs was left out or guessed; the analysis goes on."""


def warn(message: str) -> None:
    """One-line warning about the input (rows left out, groups without a reference)."""
    warnings.warn(message, AnalysisWarning, stacklevel=3)


#: The notes of the runs an analysis leaves out (the MLflow and the CSV readers say the same).
UNFINISHED_NOTE = "unfinished run(s) (running or failed) left out"
STOPPED_NOTE = (
    "run(s) stopped early by the scheduler left out "
    "(fewer epochs: their mIoU is not comparable with finished runs)"
)


def leave_out(frame: pd.DataFrame, mask: pd.Series, where: str, note: str) -> pd.DataFrame:
    """``frame`` without the rows ``mask`` marks, with one warning that counts them."""
    if not mask.any():
        return frame
    warn(f"{where}: {int(mask.sum())} {note}")
    return frame.loc[~mask]


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
        hint = ""
        if any(c.startswith("params.") for c in raw.columns):  # an export of an earlier version
            hint = " (export the runs again: `spectral-sweep runs --csv` writes them)"
        raise InputError(
            f"runs CSV {str(path)!r} lacks column(s) {', '.join(missing)}; required: "
            f"{', '.join(REQUIRED_COLUMNS)}{hint}"
        )
    if raw.empty:
        raise InputError(f"runs CSV {str(path)!r} has no rows")
    raw = _trained_rows(raw, path)
    frame = pd.DataFrame(
        {"model": _text(raw, "model", path), "dataset": _text(raw, "dataset", path)}
    )
    points = point_columns(raw)
    for column in ("prune_rate", "lrg", "miou", "gflops", *OPTIONAL_NUMERIC, *points):
        if column in raw.columns:
            frame[column] = _numbers(raw, column, path, required=column in REQUIRED_COLUMNS)
    for column in ("backbone", "truncation", "run_id"):
        if column in raw.columns:
            frame[column] = [v.strip() or None for v in raw[column]]
    ids = list(frame["run_id"]) if "run_id" in frame else [None] * len(raw)
    lines = [int(i) + 2 for i in raw.index]
    frame["run_id"] = [v or f"{path.name}:{line}" for line, v in zip(lines, ids, strict=True)]
    if "native_lrg" not in frame:
        frame["native_lrg"] = _native_from_rows(frame)
    if "spectrum_csv" in raw.columns:
        frame["spectrum_uri"] = [
            str((path.parent / v.strip()).resolve()) if v.strip() else None
            for v in raw["spectrum_csv"]
        ]
    elif "spectrum_uri" in raw.columns:
        frame["spectrum_uri"] = [_local_uri(v) for v in raw["spectrum_uri"]]
    frame.index = raw.index
    _check_values(frame, path, lines)
    return normalise(frame.reset_index(drop=True), source=str(path))


def _trained_rows(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The rows of trained, finished runs, as :func:`analysis.mlflow_trials.load_runs_mlflow`
    keeps them; only columns the file has are read (``role``, ``status``, ``stopped_early``, as
    ``runs --csv`` writes them). Rows keep their index (line = index + 2)."""
    where = f"runs CSV {str(path)!r}"
    if "role" in raw.columns:
        # analysis/prediction runs, and runs without a config (no model), trained nothing
        untrained = raw["role"].str.strip().isin(UNTRAINED_ROLES) | (raw["model"].str.strip() == "")
        raw = raw.loc[~untrained]
    if "status" in raw.columns:
        status = raw["status"].str.strip()
        raw = leave_out(raw, (status != "") & (status != "FINISHED"), where, UNFINISHED_NOTE)
    if "stopped_early" in raw.columns:
        stopped = raw["stopped_early"].str.strip().str.lower() == "true"
        raw = leave_out(raw, stopped, where, STOPPED_NOTE)
    if raw.empty:
        raise InputError(f"{where} has no finished trial runs")
    return raw


def _local_uri(value: str) -> str | None:
    """A ``spectrum_uri`` cell kept when it names a local file (a path or ``file:`` URI); remote
    artifact URIs are dropped (R_ce then comes from the ``r_ce_nu{K}`` columns), so a CSV never
    waits on a tracking server."""
    text = value.strip()
    if not text:
        return None
    if text.startswith("file:") or ("://" not in text and ":/" not in text):
        return text
    return None


def _text(raw: pd.DataFrame, column: str, path: Path) -> list[str]:
    values = [v.strip() for v in raw[column]]
    for i, value in zip(raw.index, values, strict=True):
        if not value:
            raise InputError(f"runs CSV {str(path)!r}: line {i + 2}, column {column!r} is empty")
    return values


def _numbers(raw: pd.DataFrame, column: str, path: Path, required: bool) -> list[float]:
    """Parse one column as floats; blank/NaN -> NaN; anything else names line and column."""
    out: list[float] = []
    for i, text in zip(raw.index, raw[column], strict=True):
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


def _check_values(frame: pd.DataFrame, path: Path, lines: list[int]) -> None:
    """Range checks that name the line: mIoU a fraction, LRG a positive integer, ..."""
    where = f"runs CSV {str(path)!r}"
    for line, row in zip(lines, frame.itertuples(index=False), strict=True):
        miou = float(row.miou)
        if not math.isnan(miou) and not 0.0 <= miou <= 1.0:
            raise InputError(
                f"{where}: line {line}, column 'miou': {miou:g} is not a fraction in [0, 1] "
                "(percent? divide by 100)"
            )
        lrg = float(row.lrg)
        if not (lrg >= 1 and lrg == int(lrg)):
            raise InputError(f"{where}: line {line}, column 'lrg': {lrg:g} is not a grid size >= 1")
        if not 0 < float(row.gflops) < math.inf:
            raise InputError(
                f"{where}: line {line}, column 'gflops': {row.gflops:g} is not a number > 0"
            )
        if not 0.0 <= float(row.prune_rate) < 1.0:
            raise InputError(
                f"{where}: line {line}, column 'prune_rate': {row.prune_rate:g} is not in [0, 1)"
            )
        _check_optional(row, where, line)


#: Optional numeric columns that must be whole numbers of at least the bound when given.
_WHOLE_AT_LEAST = {"annotation_nu_max": 0, "input_size": 1, "seed": None}


def _check_optional(row: Any, where: str, line: int) -> None:
    """The optional columns' ranges (blank is fine): label bands, sizes and seeds are whole
    numbers, R_ce is a rate >= 0."""
    for column, low in _WHOLE_AT_LEAST.items():
        value = float(getattr(row, column, math.nan))
        if math.isnan(value):
            continue
        if not math.isfinite(value) or value != int(value) or (low is not None and value < low):
            bound = "" if low is None else f" >= {low}"
            raise InputError(
                f"{where}: line {line}, column {column!r}: {value:g} is not a whole number{bound}"
            )
    r_ce = float(getattr(row, "r_ce", math.nan))
    if not math.isnan(r_ce) and not 0 <= r_ce < math.inf:
        raise InputError(f"{where}: line {line}, column 'r_ce': {r_ce:g} is not a rate >= 0")


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
        if c in OPTIONAL_NUMERIC
        or c in ("prune_rate", "miou", "gflops")
        or r_ce_point_band(str(c)) is not None
    ]
    for column in floats:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out["lrg"] = pd.to_numeric(out["lrg"]).astype(int)
    nan = out["miou"].isna()
    if nan.any():
        warn(f"{source}: {int(nan.sum())} run(s) with NaN mIoU left out")
        out = out.loc[~nan]
    return out[[*RUN_COLUMNS, *point_columns(out)]].reset_index(drop=True)


def point_columns(frame: pd.DataFrame) -> list[str]:
    """The ``r_ce_nu{K}`` columns of a frame, by band."""
    bands = {str(c): r_ce_point_band(str(c)) for c in frame.columns}
    return sorted((c for c, nu in bands.items() if nu is not None), key=lambda c: bands[c] or 0)


def is_nan(value: Any) -> bool:
    """Whether ``value`` is a NaN number (None and text are not: they are values)."""
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


__all__ = [
    "CONTEXT_KEYS",
    "REQUIRED_COLUMNS",
    "RUN_COLUMNS",
    "AnalysisWarning",
    "is_nan",
    "load_runs_csv",
    "normalise",
    "point_columns",
    "warn",
]
