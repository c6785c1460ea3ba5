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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.estimator import Estimator
from analysis.plan import Plan, ReferenceRun, plan_lrgs, plan_reference
from trainables.config import TrialConfig, native_grid_size
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

TRUNCATION = "truncation"
ANNOTATION = "annotation"
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
    reference: dict[str, Any]  # trial config that is trained
    candidates: tuple[dict[str, Any], ...]  # trial configs predicted from the reference

    @property
    def reference_key(self) -> str:
        """``TrialConfig.key`` of the reference (matches its MLflow run)."""
        return TrialConfig.from_dict(self.reference).key

    @property
    def label(self) -> str:
        """``model / dataset / prune p`` for tables and messages."""
        cfg = TrialConfig.from_dict(self.reference)
        return f"{cfg.model} / {cfg.dataset} / prune {cfg.prune_rate:g}"

    def candidate_lrgs(self) -> list[int]:
        """Truncation groups: every candidate's LRG and the native grid, largest first."""
        cfg = TrialConfig.from_dict(self.reference)
        native = native_grid_size(cfg.input_size)
        sizes = {_grid(c) for c in self.candidates} | {native}
        return sorted(sizes, reverse=True)


def _grid(config: Mapping[str, Any]) -> int:
    """The decoder grid a trial trains at (its LRG, or the native grid)."""
    cfg = TrialConfig.from_dict(config)
    return cfg.lrg if cfg.lrg is not None else native_grid_size(cfg.input_size)


def _without(config: Mapping[str, Any], axis: str) -> str:
    """The canonical key of ``config`` with ``axis`` reset: what its group shares."""
    canonical = TrialConfig.from_dict(config).canonical().to_dict()
    canonical[axis] = None
    return TrialConfig.from_dict(canonical).key


def estimate_groups(trials: Sequence[Mapping[str, Any]]) -> list[EstimateGroup]:
    """Split a space's trials into truncation and annotation groups, in first-seen order.

    A truncation group lacking a native-grid trial gets one as its reference (it is what the
    predictions are made from). A group whose only trial is its reference predicts nothing and
    is left out.
    """
    if not trials:
        raise InputError("the space has no trials to plan")
    by_key = {TrialConfig.from_dict(t).key: dict(t) for t in trials}
    truncation: dict[str, list[dict[str, Any]]] = {}
    annotation: dict[str, list[dict[str, Any]]] = {}
    for trial in by_key.values():
        if TrialConfig.from_dict(trial).uses_blockwise_labels:
            annotation.setdefault(_without(trial, "annotation_nu_max"), []).append(trial)
        else:
            truncation.setdefault(_without(trial, "lrg"), []).append(trial)
    groups = [_truncation_group(members) for members in truncation.values()]
    groups += [_annotation_group(members, by_key) for members in annotation.values()]
    return [g for g in groups if g.candidates]


def _truncation_group(members: list[dict[str, Any]]) -> EstimateGroup:
    native = [m for m in members if TrialConfig.from_dict(m).canonical().lrg is None]
    if native:
        reference = native[0]
    else:
        first = TrialConfig.from_dict(members[0])
        reference = {**members[0], "lrg": native_grid_size(first.input_size)}
    key = TrialConfig.from_dict(reference).key
    candidates = tuple(m for m in members if TrialConfig.from_dict(m).key != key)
    return EstimateGroup(TRUNCATION, reference, candidates)


def _annotation_group(
    members: list[dict[str, Any]], by_key: Mapping[str, dict[str, Any]]
) -> EstimateGroup:
    pixel_wise = {**members[0], "annotation_nu_max": None}
    reference = by_key.get(TrialConfig.from_dict(pixel_wise).key, pixel_wise)
    return EstimateGroup(ANNOTATION, reference, tuple(members))


def reference_trials(groups: Sequence[EstimateGroup]) -> list[dict[str, Any]]:
    """The distinct reference configs to train (groups may share one)."""
    out: dict[str, dict[str, Any]] = {}
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
    def recommended_config(self) -> dict[str, Any] | None:
        """The trial config of the recommended LRG (truncation groups), else None."""
        if self.group.kind != TRUNCATION or self.plan.recommended is None:
            return None
        for config in (self.group.reference, *self.group.candidates):
            if _grid(config) == self.plan.recommended:
                return config
        return {**self.group.reference, "lrg": self.plan.recommended}


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
    from trainables.flops import architecture_flops
    from trainables.spectral import lrg_of_band

    gflops = architecture_flops(
        reference.model,
        reference.backbone,
        reference.input_size,
        reference.num_classes,
        None,
        reference.prune_rate,
        reference.decoder_prune_rate,
        convention=reference.flops_convention,
    ).gflops
    bands = {int(TrialConfig.from_dict(c).annotation_nu_max or 0) for c in group.candidates}
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
        best = measured.sort_values(["fpi", "lrg"], ascending=[True, False]).iloc[0]
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
                "exact": picked == int(best["lrg"]),
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
