"""The estimate strategy, as pure planning: train one reference per group, predict the rest.

A search space's trials fall into groups that differ only along one axis:

- truncation groups: pixel-wise trials that differ only in ``lrg``; the reference is the trial
  at the native grid (added when the space lacks it), the candidates are the other LRG sizes;
- annotation groups: trials that differ only in a block-wise ``annotation_nu_max``; the
  reference is the pixel-wise trial of the same setting.

Only references are trained. Each candidate is predicted from its reference's R_ce curve with an
estimator (``analysis.plan``): for truncation groups with counted FLOPs and an FPI-minimising
recommendation, for annotation groups as a predicted mIoU drop only (labels cost no FLOPs).
:func:`verdict` compares the picks with the optimum of an exhaustive sweep of the same space.
No Ray and no MLflow here: ``orchestrator.strategy`` runs the trainings and records the plans.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.estimator import Estimator
from analysis.groups import ANNOTATION, TRUNCATION, is_exact, least_fpi
from analysis.plan import Plan, plan_lrgs, plan_reference
from analysis.references import ReferenceRun
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.grids import lrg_of_band

if TYPE_CHECKING:
    import pandas as pd

#: Columns of the verdict table.
VERDICT_COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "prune_rate",
    "optimal_lrg",
    "picked_lrg",
    "exact",
    "optimal_fpi",
    "picked_fpi",
    "regret",
)


@dataclass(frozen=True)
class EstimateGroup:
    """Trials that differ along one axis: the trained reference and the predicted candidates."""

    kind: str  # TRUNCATION (the lrg axis) or ANNOTATION (the annotation_nu_max axis)
    reference: TrialConfig  # the trial that is trained
    candidates: tuple[TrialConfig, ...]  # the trials predicted from the reference

    @property
    def reference_key(self) -> str:
        """``TrialConfig.key`` of the reference (matches its MLflow run)."""
        return self.reference.key

    @property
    def label(self) -> str:
        """``model / dataset / prune p`` for tables and messages."""
        cfg = self.reference
        return f"{cfg.model} / {cfg.dataset} / prune {cfg.prune_rate:g}"

    def candidate_lrgs(self) -> list[int]:
        """Truncation groups: every candidate's LRG and the native grid, largest first."""
        sizes = {c.effective_lrg for c in self.candidates} | {self.reference.native_lrg}
        return sorted(sizes, reverse=True)


def _without(cfg: TrialConfig, axis: str) -> str:
    """The canonical key of ``cfg`` with ``axis`` reset: what its group shares."""
    reset: dict[str, Any] = {axis: None}
    return dataclasses.replace(cfg.canonical(), **reset).key


def estimate_groups(trials: Sequence[TrialConfig]) -> list[EstimateGroup]:
    """Split a space's trials into truncation and annotation groups, in first-seen order.

    A truncation group lacking a native-grid trial gets one as its reference (it is what the
    predictions are made from). A group whose only trial is its reference predicts nothing and
    is left out.
    """
    if not trials:
        raise InputError("the space has no trials to plan")
    by_key = {t.key: t for t in trials}
    truncation: dict[str, list[TrialConfig]] = {}
    annotation: dict[str, list[TrialConfig]] = {}
    for trial in by_key.values():
        if trial.uses_blockwise_labels:
            annotation.setdefault(_without(trial, "annotation_nu_max"), []).append(trial)
        else:
            truncation.setdefault(_without(trial, "lrg"), []).append(trial)
    groups = [_truncation_group(members) for members in truncation.values()]
    groups += [_annotation_group(members, by_key) for members in annotation.values()]
    return [g for g in groups if g.candidates]


def _truncation_group(members: list[TrialConfig]) -> EstimateGroup:
    native = [m for m in members if m.is_native]
    first = members[0]
    reference = native[0] if native else dataclasses.replace(first, lrg=first.native_lrg)
    candidates = tuple(m for m in members if m.key != reference.key)
    return EstimateGroup(TRUNCATION, reference, candidates)


def _annotation_group(
    members: list[TrialConfig], by_key: Mapping[str, TrialConfig]
) -> EstimateGroup:
    pixel_wise = dataclasses.replace(members[0], annotation_nu_max=None)
    reference = by_key.get(pixel_wise.key, pixel_wise)
    return EstimateGroup(ANNOTATION, reference, tuple(members))


def reference_trials(groups: Sequence[EstimateGroup]) -> list[TrialConfig]:
    """The distinct reference trials to train (groups may share one)."""
    out: dict[str, TrialConfig] = {}
    for group in groups:
        out.setdefault(group.reference_key, group.reference)
    return list(out.values())


# --------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class GroupPlan:
    """A group, its reference run, and the plan predicted from it."""

    group: EstimateGroup
    reference: ReferenceRun
    plan: Plan

    @property
    def recommended_config(self) -> TrialConfig | None:
        """The trial of the recommended LRG (truncation groups), else None."""
        if self.group.kind != TRUNCATION or self.plan.recommended is None:
            return None
        for cfg in (self.group.reference, *self.group.candidates):
            if cfg.effective_lrg == self.plan.recommended:
                return cfg
        return dataclasses.replace(self.group.reference, lrg=self.plan.recommended)


def plan_group(
    group: EstimateGroup,
    reference: ReferenceRun,
    estimator: Estimator,
    max_drop: float | None = None,
) -> GroupPlan:
    """Predict every candidate of ``group`` from its reference run.

    Truncation: the plan over the candidate LRG sizes (FLOPs counted). Annotation: predicted
    drop and mIoU at each band limit, the FLOPs unchanged; the coarsest labels within
    ``max_drop`` are recommended when it is given.
    """
    if group.kind == TRUNCATION:
        plan = plan_reference(estimator, reference, group.candidate_lrgs(), max_drop)
    else:
        plan = _annotation_plan(group, reference, estimator, max_drop)
    return GroupPlan(group, reference, plan)


def _annotation_plan(
    group: EstimateGroup, reference: ReferenceRun, estimator: Estimator, max_drop: float | None
) -> Plan:
    """Predictions at each label band: band ``nu`` is that of an LRG ``2 nu + 1``, so the LRG
    plan's rows apply with the reference's own FLOPs (labels cost none); the recommendation is
    the coarsest feasible band instead of the least FPI."""
    gflops = reference.gflops(None)
    bands = {int(c.annotation_nu_max or 0) for c in group.candidates}
    candidates = {lrg_of_band(nu): gflops for nu in bands}
    plan = plan_lrgs(estimator, reference.miou, reference.curve, candidates, max_drop=max_drop)
    table = plan.table.drop(columns="lrg").rename(columns={"nu_max": "annotation_nu_max"})
    coarsest = table.loc[table["feasible"]] if max_drop is not None else table.iloc[0:0]
    return Plan(
        table=table,
        recommended=int(coarsest["annotation_nu_max"].min()) if not coarsest.empty else None,
        reference_miou=reference.miou,
        reference_lrg=reference.lrg,
        max_drop=max_drop,
        context=reference.context(),
    )


# --------------------------------------------------------------------- verdict


def verdict(plans: Sequence[GroupPlan], exhaustive_rows: pd.DataFrame) -> pd.DataFrame:
    """The estimate strategy's LRG picks against the exhaustive sweep's optimum, per group.

    ``exhaustive_rows``: prepared runs of the exhaustive sweep (``analysis.prepare_runs``), with
    ``model, dataset, prune_rate, lrg, fpi`` and ``kind``. Regret = FPI(pick) / FPI(optimum) - 1,
    both as measured by the exhaustive sweep; a pick it did not measure has NaN regret.
    """
    import pandas as pd

    truncation = exhaustive_rows.loc[exhaustive_rows["kind"] == TRUNCATION]
    records = []
    for item in plans:
        if item.group.kind != TRUNCATION:
            continue
        ref = item.reference
        mask = (
            (truncation["model"] == ref.model)
            & (truncation["dataset"] == ref.dataset)
            & (truncation["prune_rate"].astype(float) == float(ref.prune_rate))
        )
        measured = truncation.loc[mask & truncation["fpi"].notna()]
        if measured.empty:
            continue
        best = least_fpi(measured)
        picked = item.plan.recommended
        at_pick = measured.loc[measured["lrg"] == picked, "fpi"]
        picked_fpi = float(at_pick.iloc[0]) if len(at_pick) else math.nan
        records.append(
            {
                "model": ref.model,
                "dataset": ref.dataset,
                "prune_rate": ref.prune_rate,
                "optimal_lrg": int(best["lrg"]),
                "picked_lrg": picked,
                "exact": is_exact(picked_fpi, float(best["fpi"])),
                "optimal_fpi": float(best["fpi"]),
                "picked_fpi": picked_fpi,
                "regret": picked_fpi / float(best["fpi"]) - 1.0,
            }
        )
    return pd.DataFrame(records, columns=list(VERDICT_COLUMNS))


__all__ = [
    "ANNOTATION",
    "TRUNCATION",
    "EstimateGroup",
    "GroupPlan",
    "estimate_groups",
    "plan_group",
    "reference_trials",
    "verdict",
]
