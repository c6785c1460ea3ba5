"""A sweep's runs -> groups, references, relative drops, optimal LRGs and the estimator fit.

Definitions (``/work/shared/DESIGN.md``):

- FPI = gflops / mIoU; the optimal LRG of a (model, dataset, prune rate) group is its argmin
  among pixel-wise runs (ties: the larger LRG).
- Truncation groups: pixel-wise runs of one (model, dataset, prune rate); the reference is the
  run at the largest LRG, which must be the native grid when that is known (else the group has
  no reference: a warning names it and it is left out of the fit).
- Annotation groups: runs with ``annotation_nu_max`` of one (model, dataset, prune rate, LRG);
  the reference is the one with the largest nu_max; when the input size is known and that is
  below the image's native band, a pixel-wise run of the same setting is the reference instead.
- Relative drop = (mIoU_ref - mIoU) / mIoU_ref; its regressor is the row's own ``r_ce`` when the
  input gives one, else R_ce of the reference run at the row's band (``(lrg - 1) // 2`` for
  truncation, ``annotation_nu_max`` for annotation). A reference row is the point
  (R_ce of the reference at its own band, 0): e.g. (0.008, 0) for PASCAL at LRG 129 (paper
  Fig. 5: "each line consists of 7 data with LRG sizes 129 ... 17"); R_ce is 0 only at the
  image's own band (256 at 513), not at the decoder's native grid.
- The estimator is the least-squares line over every point with R_ce < ``r_ce_max``.

Context columns (backbone, input size, decoder prune rate, truncation mode) split groups too
when they take more than one value. Repeats of one configuration (seeds) are averaged first.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.estimator import DEFAULT_R_CE_MAX, Estimator, fit_estimator
from analysis.plan import band_of_lrg, curve_at, plan_lrgs
from analysis.runs import (
    CONTEXT_KEYS,
    AnalysisWarning,
    mean_spectrum,
    point_columns,
    points_curve,
    read_spectrum,
    spectrum_curve,
    warn,
)
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

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


def fpi(gflops: Any, miou: Any) -> Any:
    """FLOPs per IoU: ``gflops / miou`` (mIoU as a fraction); works on scalars and Series."""
    return gflops / miou


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
        parts.setdefault(tuple(None if _isnan(run[k]) else run[k] for k in keys), []).append(run)
    records = []
    for _, part in sorted(parts.items(), key=lambda item: _sort_key(item[0])):
        record: dict[str, Any] = {k: part[0][k] for k in keys}
        for column in means:
            values = [float(r[column]) for r in part if not _isnan(r[column])]
            record[column] = sum(values) / len(values) if values else math.nan
        for column in firsts:
            values = [r[column] for r in part if r[column] is not None and not _isnan(r[column])]
            record[column] = values[0] if values else None
        natives = [float(r["native_lrg"]) for r in part if not _isnan(r["native_lrg"])]
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


def group_label(key: dict[str, Any], kind: str) -> str:
    """``deeplabv3plus / voc / prune 0.2 [/ backbone resnet18] [/ LRG 17 annotation]``."""
    parts = [str(key["model"]), str(key["dataset"]), f"prune {float(key['prune_rate']):g}"]
    parts += [f"{k} {_text(v)}" for k, v in key.items() if k not in (*BASE_KEYS, "lrg")]
    if kind == ANNOTATION:
        parts.append(f"LRG {int(key['lrg'])} annotation")
    return " / ".join(parts)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _by(frame: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    for values, part in frame.groupby(keys, dropna=False, sort=True):
        yield dict(zip(keys, values, strict=True)), part


def find_groups(rows: pd.DataFrame, load_spectra: bool = True) -> list[Group]:
    """Truncation and annotation groups of prepared rows, each with its reference and curve."""
    keys = group_keys(rows)
    groups: list[Group] = []
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    for key, part in _by(pixel, keys):
        group = Group(TRUNCATION, key, group_label(key, TRUNCATION), part)
        group.reference = _truncation_reference(group)
        groups.append(group)
    annotated = rows.loc[rows["kind"] == ANNOTATION]
    for key, part in _by(annotated, [*keys, "lrg"]):
        group = Group(ANNOTATION, key, group_label(key, ANNOTATION), part)
        group.reference = _annotation_reference(group, pixel, keys)
        groups.append(group)
    for group in groups:
        if group.reference is not None:
            _attach_curve(group, load_spectra)
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
    band = _native_band(ref)
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


def _native_band(row: dict[str, Any]) -> int | None:
    """The image's highest band: ``(input_size - 1) // 2``, else from the stride-4 native grid
    (``2 * (native_lrg - 1)``: 256 for 129); None when neither is known."""
    input_size = row.get("input_size")
    if input_size is not None and not _isnan(input_size):
        return (int(input_size) - 1) // 2
    native = row.get("native_lrg")
    if native is not None and not _isnan(native):
        return 2 * (int(native) - 1)
    return None


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _attach_curve(group: Group, load_spectra: bool) -> None:
    """The reference's R_ce curve: its spectrum.csv, else r_ce_nu{K}, else the rows' r_ce."""
    ref = group.reference
    assert ref is not None
    if load_spectra and ref.get("spectrum_uris"):
        frames = [read_spectrum(uri, ref.get("tracking_uri")) for uri in ref["spectrum_uris"]]
        spectrum = mean_spectrum([f for f in frames if f is not None])
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
    if _isnan(a) and _isnan(b):
        return True
    return bool(a == b)


def reference_curves(runs: pd.DataFrame, load_spectra: bool = True) -> dict[str, dict[int, float]]:
    """Each reference run's R_ce curve ``{nu: R_ce}``, keyed by its (first) run id."""
    groups = find_groups(prepare_runs(runs), load_spectra)
    return {
        str(g.reference["run_id"]): g.curve for g in groups if g.reference is not None and g.curve
    }


def truncation_references(rows: pd.DataFrame, load_spectra: bool = True) -> pd.DataFrame:
    """One row per truncation group with a reference: its row plus ``label`` and ``curve``."""
    import pandas as pd

    records = []
    for group in find_groups(rows, load_spectra):
        if group.kind == TRUNCATION and group.reference is not None:
            records.append({**group.reference, "label": group.label, "curve": group.curve})
    return pd.DataFrame(records)


# --------------------------------------------------------------------- drops, optimum, fit


def drop_table(groups: list[Group], r_ce_max: float = DEFAULT_R_CE_MAX) -> pd.DataFrame:
    """One row per (group with a reference, configuration): ``drop``, regressor ``r_ce``,
    ``is_reference``, ``in_fit`` (finite R_ce below ``r_ce_max``), plus the row's columns."""
    import pandas as pd

    records: list[dict[str, Any]] = []
    for group in groups:
        ref = group.reference
        if ref is None:
            continue
        members = group.rows.to_dict("records")
        if all(r["run_id"] != ref["run_id"] for r in members):
            members.insert(0, {**ref, "kind": group.kind})
        missing: list[float] = []
        for row in members:
            is_ref = row["run_id"] == ref["run_id"]
            drop = 0.0 if is_ref else (ref["miou"] - row["miou"]) / ref["miou"]
            # the reference too sits at its own band's R_ce (e.g. 0.008 at LRG 129), not at 0
            r_ce = row["r_ce"] if not _isnan(row["r_ce"]) else curve_at(group.curve, row["nu_max"])
            if _isnan(r_ce):
                missing.append(float(row["nu_max"]))
            records.append(
                {
                    **{k: v for k, v in row.items() if k != "r_ce"},
                    "group": group.label,
                    "kind": group.kind,
                    "reference_run": ref["run_id"],
                    "reference_miou": ref["miou"],
                    "is_reference": is_ref,
                    "drop": drop,
                    "r_ce": float(r_ce),
                    "in_fit": (not _isnan(r_ce)) and r_ce < r_ce_max,
                }
            )
        if missing:
            warn(f"group {group.label}: {_missing_reason(missing, group.curve)}")
    return pd.DataFrame(records)


def _missing_reason(bands: list[float], curve: dict[int, float]) -> str:
    """Why runs have no regressor: no curve at all, or bands outside the curve's range."""
    count = f"{len(bands)} run(s) without R_ce"
    if not curve:
        return f"{count} (no spectrum.csv, r_ce_nu metrics or r_ce column) left out of the fit"
    shown = ", ".join(f"{b:g}" for b in sorted(set(bands)))
    return (
        f"{count} left out of the fit: band(s) {shown} outside the reference curve's bands "
        f"{min(curve)}..{max(curve)}"
    )


def optimal_lrg(rows: pd.DataFrame) -> pd.DataFrame:
    """Per truncation group: the pixel-wise configuration with the least FPI (ties: larger LRG).

    Columns: the group keys, then ``lrg, gflops, miou, fpi``.
    """
    import pandas as pd

    keys = group_keys(rows)
    pixel = rows.loc[rows["kind"] == TRUNCATION]
    records = []
    for key, part in _by(pixel, keys):
        best = part.sort_values(["fpi", "lrg"], ascending=[True, False]).iloc[0]
        records.append({**key, **{c: best[c] for c in OPTIMAL_COLUMNS}})
    out = pd.DataFrame(records, columns=[*keys, *OPTIMAL_COLUMNS])
    out["lrg"] = out["lrg"].astype(int)
    return out


def fit_drops(
    drops: pd.DataFrame, r_ce_max: float = DEFAULT_R_CE_MAX, source: str = ""
) -> Estimator:
    """Fit the estimator to a drop table's points with R_ce < ``r_ce_max``."""
    if drops.empty:
        raise InputError("cannot fit the estimator: no group has a reference run")
    # a pixel-wise reference shared by a truncation and an annotation group is one point
    drops = drops.drop_duplicates("run_id")
    points = drops.loc[drops["r_ce"].notna() & (drops["r_ce"] < r_ce_max)]
    if bool(points["is_reference"].all()):  # references only: every drop is 0 by definition
        raise InputError(
            f"cannot fit the estimator: only reference runs (drop 0) have R_ce < {r_ce_max}; "
            "expected truncated or block-wise runs beside them"
        )
    fitted_on: dict[str, Any] = {
        "datasets": sorted(str(v) for v in points["dataset"].unique()),
        "models": sorted(str(v) for v in points["model"].unique()),
        "kinds": sorted(str(v) for v in points["kind"].unique()),
        "groups": int(points["group"].nunique()),
        "runs": int(points.drop_duplicates("run_id")["n_runs"].sum()),
    }
    if source:
        fitted_on["source"] = source
    return fit_estimator(
        drops["r_ce"].to_numpy(float), drops["drop"].to_numpy(float), r_ce_max, fitted_on
    )


# --------------------------------------------------------------------- validation


LODO_COLUMNS: tuple[str, ...] = (
    "true_lrg",
    "picked_lrg",
    "exact",
    "fpi_opt",
    "fpi_picked",
    "regret",
    "n_fit",
    "slope",
    "intercept",
)


def leave_one_dataset_out(
    groups: list[Group], drops: pd.DataFrame, r_ce_max: float = DEFAULT_R_CE_MAX
) -> pd.DataFrame:
    """For each data set: fit on the others, pick each held-out group's LRG by predicted FPI.

    Predicted mIoU = reference mIoU * (1 - predicted drop) (see :func:`plan_lrgs`), FLOPs known.
    One row per held-out truncation group: its keys, the true optimum, the pick, ``exact``, and
    the FPI regret ``(FPI_picked - FPI_opt) / FPI_opt``. Needs two data sets or more.
    """
    import pandas as pd

    truncation = [g for g in groups if g.kind == TRUNCATION]
    keys = list(truncation[0].key) if truncation else list(BASE_KEYS)
    columns = ["dataset", *[k for k in keys if k != "dataset"], *LODO_COLUMNS]
    datasets = sorted(str(d) for d in drops["dataset"].unique()) if not drops.empty else []
    if len(datasets) < 2:
        return pd.DataFrame(columns=columns)
    records = []
    for held in datasets:
        train = drops.loc[(drops["dataset"] != held) & drops["in_fit"]]
        try:
            estimator = fit_drops(train, r_ce_max)
        except InputError as err:
            warn(f"leave-one-dataset-out: {held} skipped ({err})")
            continue
        for group in groups:
            if group.kind != TRUNCATION or group.reference is None or group.key["dataset"] != held:
                continue
            record = _lodo_group(group, drops, estimator)
            if record is not None:
                records.append({**group.key, **record})
    return pd.DataFrame(records, columns=columns)


def _lodo_group(group: Group, drops: pd.DataFrame, estimator: Estimator) -> dict[str, Any] | None:
    ref = group.reference
    assert ref is not None
    part = drops.loc[(drops["group"] == group.label) & drops["r_ce"].notna()]
    if len(part) < 2:
        return None
    curve = {int(nu): float(r) for nu, r in zip(part["nu_max"], part["r_ce"], strict=True)}
    candidates = {int(s): float(g) for s, g in zip(part["lrg"], part["gflops"], strict=True)}
    plan = plan_lrgs(
        estimator, float(ref["miou"]), curve, candidates, reference_lrg=int(ref["lrg"])
    )
    # the truth is the group's optimum over all its configurations, predictable or not
    measured = group.rows.loc[group.rows["fpi"].notna()]
    truth = measured.sort_values(["fpi", "lrg"], ascending=[True, False]).iloc[0]
    fpi_opt = float(truth["fpi"])
    picked = plan.recommended
    if picked is None:
        return None
    fpi_picked = float(measured.loc[measured["lrg"] == picked, "fpi"].iloc[0])
    return {
        "true_lrg": int(truth["lrg"]),
        "picked_lrg": int(picked),
        "exact": int(truth["lrg"]) == int(picked),
        "fpi_opt": fpi_opt,
        "fpi_picked": fpi_picked,
        "regret": (fpi_picked - fpi_opt) / fpi_opt,
        "n_fit": estimator.n,
        "slope": estimator.slope,
        "intercept": estimator.intercept,
    }


# --------------------------------------------------------------------- all at once


@dataclass
class Analysis:
    """Everything ``spectral-sweep analyze`` reports."""

    rows: pd.DataFrame  # prepared runs (repeats averaged)
    groups: list[Group]
    drops: pd.DataFrame  # relative drops and regressors of every group with a reference
    optimal: pd.DataFrame  # optimal LRG per truncation group
    estimator: Estimator | None  # None when too few points to fit a line
    lodo: pd.DataFrame  # leave-one-dataset-out validation
    r_ce_max: float
    notes: list[str] = field(default_factory=list)  # warnings raised while analysing


def analyze(
    runs: pd.DataFrame,
    r_ce_max: float = DEFAULT_R_CE_MAX,
    load_spectra: bool = True,
    source: str = "",
) -> Analysis:
    """Prepare runs, find groups and references, compute drops, the optimum, fit, validate.

    Warnings (groups without a reference, runs without R_ce, a fit that cannot be made) are
    issued as :class:`AnalysisWarning` and kept in ``notes``.
    """
    if not r_ce_max > 0:
        raise InputError(f"--r-ce-max {r_ce_max} must be > 0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        rows = prepare_runs(runs)
        groups = find_groups(rows, load_spectra)
        drops = drop_table(groups, r_ce_max)
        optimal = optimal_lrg(rows)
        estimator: Estimator | None
        try:
            estimator = fit_drops(drops, r_ce_max, source)
        except InputError as err:
            warn(f"no estimator fitted: {err}")
            estimator = None
        lodo = leave_one_dataset_out(groups, drops, r_ce_max)
    notes = [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    return Analysis(rows, groups, drops, optimal, estimator, lodo, r_ce_max, notes)
