"""Leave-one-dataset-out validation of the estimator: fit on the other data sets, pick each
held-out group's LRG by predicted FPI (``analysis.plan``), compare with its measured optimum."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analysis.drops import fit_drops
from analysis.estimator import DEFAULT_R_CE_MAX, Estimator
from analysis.groups import BASE_KEYS, TRUNCATION, Group, is_exact, least_fpi
from analysis.plan import plan_lrgs
from analysis.runs import warn
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


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
            estimator = fit_drops(train, r_ce_max, quiet=True)
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
    truth = least_fpi(measured)
    fpi_opt = float(truth["fpi"])
    picked = plan.recommended
    if picked is None:
        return None
    fpi_picked = float(measured.loc[measured["lrg"] == picked, "fpi"].iloc[0])
    return {
        "true_lrg": int(truth["lrg"]),
        "picked_lrg": int(picked),
        "exact": is_exact(fpi_picked, fpi_opt),
        "fpi_opt": fpi_opt,
        "fpi_picked": fpi_picked,
        "regret": (fpi_picked - fpi_opt) / fpi_opt,
        "n_fit": estimator.n,
        "slope": estimator.slope,
        "intercept": estimator.intercept,
    }


__all__ = ["LODO_COLUMNS", "leave_one_dataset_out"]
