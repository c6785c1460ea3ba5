"""R_ce curves of runs: a run's ``spectrum.csv`` (the full curve over k) and its ``r_ce_nu{K}``
points.

:func:`read_spectrum` reads ``spectrum.csv`` from a path or an artifact URI, :func:`spectrum_curve`
turns it into ``{k: R_ce}``, :func:`mean_spectrum` averages repeats and :func:`points_curve`
reads the ``r_ce_nu{K}`` entries of a row. :func:`reference_spectrum` is the loader
``analysis.groups.find_groups`` is given to read a reference's spectra.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.run_schema import INIT_PROFILE_COLUMN, r_ce_point_band

if TYPE_CHECKING:
    import pandas as pd


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

        from analysis.mlflow_runs import quiet_mlflow_logs

        quiet_mlflow_logs()
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
        if not _not_a_number(r)
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


def reference_spectrum(reference: Mapping[str, Any]) -> pd.DataFrame | None:
    """The spectrum of a prepared row: its runs' ``spectrum.csv`` files (``spectrum_uris``,
    read with its ``tracking_uri``), averaged; None when none can be read."""
    uris = reference.get("spectrum_uris") or ()
    frames = [read_spectrum(uri, reference.get("tracking_uri")) for uri in uris]
    return mean_spectrum([f for f in frames if f is not None])


def points_curve(row: Mapping[str, Any]) -> dict[int, float]:
    """R_ce points ``{nu: r_ce}`` from a row's ``r_ce_nu{K}`` entries (NaN ones skipped)."""
    out: dict[int, float] = {}
    for key, value in row.items():
        band = r_ce_point_band(str(key))
        if band is not None and value is not None and not _not_a_number(value):
            out[band] = float(value)
    return out


def _not_a_number(value: Any) -> bool:
    """NaN, or not a number at all."""
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


__all__ = [
    "mean_spectrum",
    "points_curve",
    "read_spectrum",
    "reference_spectrum",
    "spectrum_curve",
]
