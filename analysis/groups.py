"""A sweep's prepared runs -> groups, each with its reference run and the reference's R_ce curve.

Definitions (``/work/shared/DESIGN.md``):

- FPI = gflops / mIoU; the optimal LRG of a (model, dataset, prune rate) group is its argmin
  among pixel-wise runs (ties: the larger LRG).
- Truncation groups: pixel-wise runs of one (model, dataset, prune rate); the reference is the
  run at the largest LRG, which must be the native grid when that is known (else the group has
  no reference: a warning names it and it is left out of the fit).
- Annotation groups: runs with ``annotation_nu_max`` of one (model, dataset, prune rate, LRG);
  the reference is the one with the largest nu_max; when the input size is known and that is
  below the image's native band, a pixel-wise run of the same setting is the reference instead.

Context columns (backbone, input size, decoder prune rate, truncation mode) split groups too
when they take more than one value. Repeats of one configuration (seeds) are averaged first
(:func:`prepare_runs`). Grouping reads no files: :func:`find_groups` is handed the function that
loads a reference's spectrum (``analysis.spectra.reference_spectrum``), or none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.runs import CONTEXT_KEYS, is_nan, point_columns, warn
from analysis.spectra import points_curve, spectrum_curve
from trainables.errors import InputError
from trainables.grids import band_of_lrg, image_band_of_native_grid, native_band
from trainables.measures import fpi

if TYPE_CHECKING:
    import pandas as pd

#: Loads the spectrum of a reference (a prepared row), None when it has none.
SpectrumLoader = Callable[[Mapping[str, Any]], "pd.DataFrame | None"]

BASE_KEYS: tuple[str, ...] = ("model", "dataset", "prune_rate")
TRUNCATION = "truncation"
ANNOTATION = "annotation"
#: Columns of the optimal-LRG table (context keys that split groups come after prune_rate).
OPTIMAL_COLUMNS: tuple[str, ...] = ("lrg", "gflops", "miou", "fpi")


def group_keys(frame: pd.DataFrame) -> list[str]:
    """(model, dataset, prune_rate) plus every context column that takes several values within
    one of those groups (a column that follows the prune rate, like the paper's decoder rate,
    does not split anything and is left out)."""
    keys = list(BASE_KEYS)
    if frame.empty:
        return keys
    base = frame[list(BASE_KEYS)].astype(str).agg("|".join, axis=1)
    for column in CONTEXT_KEYS:
        if column not in frame:
            continue
        values = frame[column].astype(object).where(frame[column].notna(), "<none>").astype(str)
        if values.groupby(base).nunique().max() > 1:
            keys.append(column)
    return keys


def least_fpi(rows: pd.DataFrame) -> pd.Series:
    """The row with the least ``fpi`` (ties: the larger ``lrg``)."""
    return rows.sort_values(["fpi", "lrg"], ascending=[True, False]).iloc[0]


def is_exact(picked_fpi: float, least: float) -> bool:
    """Whether a pick is an FPI optimum of its group: its measured FPI is the least. A pick
    that ties the optimum :func:`least_fpi` names (ties name the larger LRG) counts; an
    unmeasured pick (NaN) does not."""
    return bool(picked_fpi == least)


# --------------------------------------------------------------------- preparing


def prepare_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Average repeats (seeds) of each configuration; add ``kind``, ``nu_max``, ``fpi``.

    One row per (group keys, lrg, annotation_nu_max), with ``n_runs`` and ``run_ids`` (tuple),
    ``spectrum_uris`` (tuple), mean ``miou, gflops, r_ce, r_ce_nu{K}``.
    """
    import pandas as pd

    if runs.empty:
        raise InputError("no runs to analyse")
    keys = [*group_keys(runs), "lrg", "annotation_nu_max"]
    means = ["miou", "gflops", "r_ce", *point_columns(runs)]
    firsts = [c for c in runs.columns if c not in {*keys, *means, "run_id", "seed", "spectrum_uri"}]
    parts: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs.to_dict("records"):
        parts.setdefault(tuple(None if is_nan(run[k]) else run[k] for k in keys), []).append(run)
    records = []
    for _, part in sorted(parts.items(), key=lambda item: _sort_key(item[0])):
        record: dict[str, Any] = {k: part[0][k] for k in keys}
        for column in means:
            values = [float(r[column]) for r in part if not is_nan(r[column])]
            record[column] = sum(values) / len(values) if values else math.nan
        for column in firsts:
            values = [r[column] for r in part if r[column] is not None and not is_nan(r[column])]
            record[column] = values[0] if values else None
        natives = [float(r["native_lrg"]) for r in part if not is_nan(r["native_lrg"])]
        record["native_lrg"] = max(natives) if natives else math.nan
        record["n_runs"] = len(part)
        record["run_ids"] = tuple(str(r["run_id"]) for r in part)
        record["run_id"] = record["run_ids"][0]
        record["spectrum_uris"] = tuple(str(r["spectrum_uri"]) for r in part if r["spectrum_uri"])
        records.append(record)
    rows = pd.DataFrame(records)
    annotated = rows["annotation_nu_max"].notna()
    rows["kind"] = [ANNOTATION if a else TRUNCATION for a in annotated]
    rows["nu_max"] = [
        float(nu) if a else float(band_of_lrg(int(s)))
        for a, nu, s in zip(annotated, rows["annotation_nu_max"], rows["lrg"], strict=True)
    ]
    rows["fpi"] = fpi(rows["gflops"], rows["miou"])
    return rows


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """Order configuration keys with None first and mixed types kept apart."""
    return tuple((0, "") if v is None else (1, v) if isinstance(v, str) else (2, v) for v in key)


# --------------------------------------------------------------------- groups


@dataclass
class Group:
    """One sweep group: its configurations, reference and the reference's R_ce curve."""

    kind: str  # "truncation" or "annotation"
    key: dict[str, Any]  # group key values (annotation groups include lrg)
    label: str
    rows: pd.DataFrame  # the group's configurations (prepared rows)
    reference: dict[str, Any] | None = None  # the reference configuration's row
    curve: dict[int, float] = field(default_factory=dict)  # band -> R_ce of the reference
    curve_source: str = ""  # "spectrum.csv", "r_ce_nu metrics", "r_ce column", "sibling"
    spectrum: pd.DataFrame | None = None  # the reference's spectrum.csv (averaged over seeds)

    @property
    def unanchored(self) -> str:
        """Why relative drops cannot be taken in this group ('' when they can): it has no
        reference run, or its reference's mIoU is not above 0 (a drop relative to 0 is
        undefined). Such a group still has an optimal LRG; it has no drops, no points in the
        fit and no backtest."""
        if self.reference is None:
            return "no reference run"
        miou = float(self.reference["miou"])
        if not miou > 0:
            run = self.reference.get("run_id", "")
            return (
                f"its reference run {run} has mIoU {miou:g}, so drops relative to it are undefined"
            )
        return ""


def group_label(key: dict[str, Any], kind: str) -> str:
    """``deeplabv3plus / voc / prune 0.2 [/ backbone resnet18] [/ LRG 17 annotation]``."""
    parts = [str(key["model"]), str(key["dataset"]), f"prune {float(key['prune_rate']):g}"]
    parts += [f"{k} {_text(v)}" for k, v in key.items() if k not in (*BASE_KEYS, "lrg")]
    if kind == ANNOTATION:
        parts.append(f"LRG {int(key['lrg'])} annotation")
    return " / ".join(parts)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def by_keys(frame: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """The parts of ``frame`` per value of ``keys`` (NaN a value too), with those values."""
    for values, part in frame.groupby(keys, dropna=False, sort=True):
        yield dict(zip(keys, values, strict=True)), part


def find_groups(rows: pd.DataFrame, load_spectrum: SpectrumLoader | None = None) -> list[Group]:
    """Truncation and annotation groups of prepared rows, each with its reference and curve.

    ``load_spectrum`` reads a reference's spectrum (its full R_ce curve); without it, or where it
    finds none, the curve comes from the reference's ``r_ce_nu{K}`` points or the rows' ``r_ce``.
    """
    keys = group_keys(rows)
    groups: list[Group] = []
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    for key, part in by_keys(pixel, keys):
        group = Group(TRUNCATION, key, group_label(key, TRUNCATION), part)
        group.reference = _truncation_reference(group)
        groups.append(group)
    annotated = rows.loc[rows["kind"] == ANNOTATION]
    for key, part in by_keys(annotated, [*keys, "lrg"]):
        group = Group(ANNOTATION, key, group_label(key, ANNOTATION), part)
        group.reference = _annotation_reference(group, pixel, keys)
        groups.append(group)
    for group in groups:
        if group.reference is not None:
            _attach_curve(group, load_spectrum)
    _share_curves(groups, keys)
    return groups


def _truncation_reference(group: Group) -> dict[str, Any] | None:
    part = group.rows
    ref = part.loc[part["lrg"].idxmax()].to_dict()
    native = float(part["native_lrg"].max())
    if not math.isnan(native) and int(ref["lrg"]) < native:
        warn(
            f"group {group.label}: no reference run at the native grid {int(native)} "
            f"(largest LRG {int(ref['lrg'])}); left out of the fit"
        )
        return None
    return ref


def _annotation_reference(
    group: Group, pixel: pd.DataFrame, keys: list[str]
) -> dict[str, Any] | None:
    """The sweep's own run at the image's band (pixel-wise labels), else the pixel-wise run of
    the same setting, else (the image's band unknown) the largest band limit."""
    part = group.rows
    ref = part.loc[part["annotation_nu_max"].idxmax()].to_dict()
    band = image_band_of(ref)
    if band is not None and ref["annotation_nu_max"] >= band:
        return ref
    same = pixel
    for k in [*keys, "lrg"]:
        same = same.loc[same[k].astype(object) == group.key[k]]
    if not same.empty:
        return same.iloc[0].to_dict()
    if band is None:
        return ref
    warn(
        f"group {group.label}: no reference run with pixel-wise labels (largest nu_max "
        f"{int(ref['annotation_nu_max'])} < native band {band}); left out of the fit"
    )
    return None


def image_band_of(row: Mapping[str, Any]) -> int | None:
    """The image's highest band (``trainables.grids.native_band`` of the input size), else from
    the stride-4 native grid (``trainables.grids.image_band_of_native_grid``: 256 for 129); None when neither is known."""
    input_size = row.get("input_size")
    if input_size is not None and not is_nan(input_size):
        return native_band(int(input_size))
    native = row.get("native_lrg")
    if native is not None and not is_nan(native):
        return image_band_of_native_grid(int(native))
    return None


def _attach_curve(group: Group, load_spectrum: SpectrumLoader | None) -> None:
    """The reference's R_ce curve: its spectrum.csv, else r_ce_nu{K}, else the rows' r_ce."""
    ref = group.reference
    assert ref is not None
    if load_spectrum is not None:
        spectrum = load_spectrum(ref)
        if spectrum is not None:
            group.spectrum = spectrum
            group.curve, group.curve_source = spectrum_curve(spectrum), "spectrum.csv"
            return
    points = points_curve(ref)
    if points:
        group.curve, group.curve_source = points, "r_ce_nu metrics"
        return
    given = group.rows.loc[group.rows["r_ce"].notna()]
    if not given.empty:
        group.curve = {
            int(nu): float(r) for nu, r in zip(given["nu_max"], given["r_ce"], strict=True)
        }
        group.curve_source = "r_ce column"


def _share_curves(groups: list[Group], keys: list[str]) -> None:
    """A reference without a curve borrows one of the other kind's group with the same keys
    (both references are the pixel-wise model at the native grid)."""
    for group in groups:
        if group.curve or group.reference is None:
            continue
        for other in groups:
            same = all(_same(other.key[k], group.key[k]) for k in keys)
            if other is not group and other.kind != group.kind and same and other.curve:
                group.curve, group.spectrum = other.curve, other.spectrum
                group.curve_source = f"{other.curve_source} of {other.label}"
                break


def _same(a: Any, b: Any) -> bool:
    if is_nan(a) and is_nan(b):
        return True
    return bool(a == b)


def truncation_references(
    rows: pd.DataFrame, load_spectrum: SpectrumLoader | None = None
) -> pd.DataFrame:
    """One row per truncation group with a reference: its row plus ``label`` and ``curve``."""
    import pandas as pd

    records = []
    for group in find_groups(rows, load_spectrum):
        if group.kind == TRUNCATION and group.reference is not None:
            records.append({**group.reference, "label": group.label, "curve": group.curve})
    return pd.DataFrame(records)


def optimal_lrg(rows: pd.DataFrame) -> pd.DataFrame:
    """Per truncation group: the pixel-wise configuration with the least FPI (ties: larger LRG).

    Columns: the group keys, then ``lrg, gflops, miou, fpi``.
    """
    import pandas as pd

    keys = group_keys(rows)
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    records = []
    for key, part in by_keys(pixel, keys):
        best = least_fpi(part)
        records.append({**key, **{c: best[c] for c in OPTIMAL_COLUMNS}})
    out = pd.DataFrame(records, columns=[*keys, *OPTIMAL_COLUMNS])
    out["lrg"] = out["lrg"].astype(int)
    return out


__all__ = [
    "ANNOTATION",
    "BASE_KEYS",
    "TRUNCATION",
    "Group",
    "SpectrumLoader",
    "by_keys",
    "find_groups",
    "fpi",
    "group_keys",
    "is_exact",
    "least_fpi",
    "optimal_lrg",
    "prepare_runs",
    "truncation_references",
]
