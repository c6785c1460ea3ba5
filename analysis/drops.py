"""Groups -> the drop table (one point per configuration) -> the estimator fit.

Relative drop = (mIoU_ref - mIoU) / mIoU_ref; its regressor is the row's own ``r_ce`` when the
input gives one, else R_ce of the reference run at the row's band (``(lrg - 1) // 2`` for
truncation, ``annotation_nu_max`` for annotation). A reference row is the point (R_ce of the
reference at its own band, 0); for an annotation group that band is the label band, the
image's own (R_ce 0) for its pixel-wise reference. For truncation: e.g. (0.008, 0) for PASCAL at LRG 129 (paper Fig. 5: "each line
consists of 7 data with LRG sizes 129 ... 17"); R_ce is 0 only at the image's own band (256 at
513), not at the decoder's native grid. The estimator is the least-squares line over every point
with R_ce < ``r_ce_max`` (``/work/shared/DESIGN.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analysis.estimator import DEFAULT_R_CE_MAX, LINEAR, Estimator, fit_estimator
from analysis.groups import ANNOTATION, Group, image_band_of
from analysis.plan import curve_at
from analysis.runs import is_nan, warn
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


def drop_table(groups: list[Group], r_ce_max: float = DEFAULT_R_CE_MAX) -> pd.DataFrame:
    """One row per (group with a reference, configuration): ``drop``, regressor ``r_ce``,
    ``is_reference``, ``in_fit`` (finite R_ce below ``r_ce_max``), plus the row's columns."""
    import pandas as pd

    records: list[dict[str, Any]] = []
    for group in groups:
        ref = group.reference
        if ref is None:
            continue  # warned where the groups are made
        if group.unanchored:
            warn(f"group {group.label}: {group.unanchored}; left out of the drops and the fit")
            continue
        members = group.rows.to_dict("records")
        if all(r["run_id"] != ref["run_id"] for r in members):
            members.insert(0, {**ref, "kind": group.kind})
        missing: list[float] = []
        for row in members:
            is_ref = row["run_id"] == ref["run_id"]
            drop = 0.0 if is_ref else (ref["miou"] - row["miou"]) / ref["miou"]
            image_band = image_band_of(row) if is_ref and group.kind == ANNOTATION else None
            if image_band is not None and is_nan(row["annotation_nu_max"]):
                row = {**row, "nu_max": float(image_band)}  # pixel-wise: at the image's band
                r_ce = _at_image_band(group.curve, image_band)
            else:
                # the reference too sits at its own band's R_ce (e.g. 0.008 at LRG 129), not 0
                r_ce = (
                    row["r_ce"] if not is_nan(row["r_ce"]) else curve_at(group.curve, row["nu_max"])
                )
            if is_nan(r_ce):
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
                    "in_fit": (not is_nan(r_ce)) and r_ce < r_ce_max,
                }
            )
        if missing:
            warn(f"group {group.label}: {_missing_reason(missing, group.curve)}")
    return pd.DataFrame(records)


def _at_image_band(curve: dict[int, float], band: int) -> float:
    """R_ce at the image's own band: the curve's value there, else 0 by definition (the whole
    spectrum is kept)."""
    value = curve_at(curve, band)
    return 0.0 if is_nan(value) else value


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


def fit_drops(
    drops: pd.DataFrame,
    r_ce_max: float = DEFAULT_R_CE_MAX,
    source: str = "",
    form: str = LINEAR,
    quiet: bool = False,
) -> Estimator:
    """Fit the estimator to a drop table: the line on its points with R_ce < ``r_ce_max``, or
    the saturating curve on every point. Clusters (model and data set) give the scale spread.
    Each reason not to trust the fit is one warning (``Estimator.warnings``) unless ``quiet``."""
    if drops.empty:
        raise InputError("cannot fit the estimator: no group has a reference run")
    # a pixel-wise reference shared by a truncation and an annotation group is one point
    drops = drops.drop_duplicates("run_id")
    finite = drops.loc[drops["r_ce"].notna()]
    points = finite.loc[finite["r_ce"] < r_ce_max] if form == LINEAR else finite
    if points.empty:
        raise InputError(f"cannot fit the estimator: no run has an R_ce below {r_ce_max}")
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
    # how far one data set departs from the pooled line is only seen across data sets: with
    # one, the spread stays unknown (NaN) and its users fall back to a wide prior
    several = drops["dataset"].nunique() > 1
    clusters = (
        (drops["model"].astype(str) + "/" + drops["dataset"].astype(str)).tolist()
        if several
        else None
    )
    estimator = fit_estimator(
        drops["r_ce"].to_numpy(float),
        drops["drop"].to_numpy(float),
        r_ce_max,
        fitted_on,
        clusters=clusters,
        form=form,
    )
    if not quiet:
        beyond = float((finite["r_ce"] >= r_ce_max).mean()) if form == LINEAR else 0.0
        for line in estimator.warnings(extrapolated=beyond):
            warn(line)
    return estimator


__all__ = ["drop_table", "fit_drops"]
