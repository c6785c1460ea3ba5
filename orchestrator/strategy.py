"""``--strategy estimate``: train each group's reference, predict the rest, optionally confirm.

The phases, each an ordinary Tune sweep, all logging into the sweep's one MLflow experiment:

1. references: the reference trial of every group (``analysis.strategy.estimate_groups``),
   Tune experiment ``<name>``, role ``reference``;
2. predictions: each reference run is read back from MLflow (its mIoU and R_ce curve), its group
   is planned with the estimator (FLOPs counted, nothing trained) and every predicted
   configuration is recorded as a FINISHED run with role ``prediction`` and ``predicted_*``
   metrics; the plan itself goes on the reference run as ``plan_lrg.json`` /
   ``plan_annotation.json`` with the metric ``recommended_lrg``;
3. with ``confirm``: each truncation group's recommended LRG is trained (Tune experiment
   ``<name>-confirm``, role ``confirm``) and its run gets the prediction beside the measurement.

``--resume`` finishes whichever phase was interrupted; nothing is logged twice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analysis.estimator import Estimator, load_estimator
from analysis.strategy import (
    ANNOTATION,
    TRUNCATION,
    EstimateGroup,
    GroupPlan,
    estimate_groups,
    plan_group,
    reference_trials,
)
from orchestrator import store
from orchestrator.settings import SweepOutcome, SweepSettings, save_settings
from search_spaces import space_of_trials
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import Artifact, Metric, Role, Strategy, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from analysis.references import ReferenceRun

log = logging.getLogger(__name__)

CONFIRM_SUFFIX = "-confirm"
#: Plan artifact on the reference run, per group kind.
PLAN_ARTIFACTS = {TRUNCATION: Artifact.PLAN_LRG_JSON, ANNOTATION: Artifact.PLAN_ANNOTATION_JSON}


@dataclass
class EstimateOutcome:
    """What the estimate strategy did: its sweeps, plans and the groups it could not plan."""

    references: SweepOutcome
    plans: list[GroupPlan] = field(default_factory=list)
    confirmations: SweepOutcome | None = None
    #: Groups with no reference to plan from, and why (``reference_of``).
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def trainings(self) -> int:
        """Trials trained: references plus confirmations."""
        confirmed = self.confirmations.total if self.confirmations is not None else 0
        return self.references.total + confirmed

    @property
    def interrupted(self) -> bool:
        """Whether a phase left trials unfinished (``--resume`` continues it)."""
        phases = [self.references, self.confirmations]
        return any(p is not None and p.unfinished for p in phases)


#: The estimator a strategy sweep plans with, saved beside Tune's state so a resumed sweep
#: plans with the same one (an --estimator-from fit could change as experiments grow).
ESTIMATOR_FILE = "estimator.json"


def resolve_estimator(settings: SweepSettings) -> Estimator:
    """The sweep's saved estimator, else a fit on ``--estimator-from``, else ``--estimator``."""
    saved = settings.experiment_path / ESTIMATOR_FILE
    if saved.exists():
        return Estimator.from_json(saved)
    if settings.estimator_from:
        from analysis.sweep import fit_experiments

        return fit_experiments(settings.tracking_uri, list(settings.estimator_from))
    return load_estimator(settings.estimator)


def save_estimator(settings: SweepSettings, estimator: Estimator) -> None:
    """Keep the estimator the sweep started with (``resolve_estimator`` reads it back)."""
    settings.experiment_path.mkdir(parents=True, exist_ok=True)
    estimator.to_json(settings.experiment_path / ESTIMATOR_FILE)


def check_estimate(settings: SweepSettings) -> tuple[Estimator, list[EstimateGroup]]:
    """The estimator and the groups to estimate, or an InputError (before Ray starts)."""
    if settings.search != "grid" or settings.scheduler != "fifo":
        raise InputError(
            f"--strategy {settings.strategy} trains fixed trials per phase; --search optuna and "
            "--scheduler asha do not apply"
        )
    if settings.max_drop is not None and not 0.0 <= settings.max_drop < 1.0:
        raise InputError(f"--max-drop {settings.max_drop} is not a fraction in [0, 1)")
    estimator = resolve_estimator(settings)
    space = settings.search_space()
    groups = estimate_groups(space.trials())
    if not groups:
        raise InputError(
            f"space {space.name!r} has no trials to predict (every group is a single trial); "
            "run it with --strategy exhaustive"
        )
    return estimator, groups


def phase_settings(
    settings: SweepSettings, trials: Sequence[TrialConfig], suffix: str, role: str
) -> SweepSettings:
    """A phase of the strategy as a sweep of exactly ``trials`` into the sweep's experiment
    (the space holds them as plain dicts: what Ray is handed)."""
    space_name = settings.search_space().name
    configs = [t.to_dict() for t in trials]
    space = space_of_trials(f"{space_name}-{role}", configs, f"{role} trials of {space_name}")
    return dataclasses.replace(
        settings,
        space=space.to_dict(),
        name=settings.name + suffix,
        experiment=settings.mlflow_experiment,
        strategy=settings.strategy,
        role=role,
    )


def start_strategy(
    settings: SweepSettings, resume: bool
) -> tuple[Estimator, list[EstimateGroup], SweepOutcome]:
    """What every strategy does first: check it (before Ray starts), keep its settings and
    estimator for ``--resume``, and train (or resume) each group's reference trial."""
    from orchestrator.tune import has_sweep, run_sweep

    estimator, groups = check_estimate(settings)
    if not resume:
        save_settings(settings)
        save_estimator(settings, estimator)
    references = phase_settings(settings, reference_trials(groups), "", Role.REFERENCE)
    resumed = resume and has_sweep(references.experiment_path)
    return estimator, groups, run_sweep(references, resume=resumed, save=False)


def run_estimate(settings: SweepSettings, *, resume: bool = False) -> EstimateOutcome:
    """Run (or resume) the estimate strategy; see the module docstring for its phases."""
    from orchestrator.tune import has_sweep, run_sweep

    estimator, groups, references = start_strategy(settings, resume)
    outcome = EstimateOutcome(references=references)
    if outcome.references.unfinished:
        return outcome
    outcome.plans, outcome.skipped = record_predictions(settings, groups, estimator)
    confirm = confirm_trials(outcome.plans)
    if settings.confirm and confirm:
        phase = phase_settings(settings, confirm, CONFIRM_SUFFIX, Role.CONFIRM)
        outcome.confirmations = run_sweep(
            phase, resume=has_sweep(phase.experiment_path), save=False
        )
        link_confirmations(settings, outcome.plans)
    return outcome


def experiment_client(settings: SweepSettings) -> tuple[MlflowClient, str]:
    """A client on the sweep's store and the id of its experiment (created if needed)."""
    client = store.make_client(settings.tracking_uri)
    experiment = settings.mlflow_experiment
    return client, store.ensure_experiment(client, experiment, settings.tracking_uri)


def reference_of(
    settings: SweepSettings, client: MlflowClient, experiment_id: str, group: EstimateGroup
) -> tuple[ReferenceRun | None, str]:
    """A group's reference run read back from MLflow, or None and why there is nothing to plan
    from: its trial did not finish, or it trained to mIoU 0 (drops relative to 0 are
    undefined: every prediction would divide by it)."""
    from analysis.references import reference_from_run

    run = store.find_config_run(client, experiment_id, group.reference_key, Role.REFERENCE)
    if run is None or run.info.status != "FINISHED":
        return None, "the reference trial did not finish"
    miou = run.data.metrics.get(Metric.MIOU, math.nan)
    if not miou > 0:
        return None, f"the reference trained to mIoU {miou:g}"
    return reference_from_run(settings.tracking_uri, run.info.run_id), ""


def record_predictions(
    settings: SweepSettings, groups: list[EstimateGroup], estimator: Estimator
) -> tuple[list[GroupPlan], dict[str, str]]:
    """Plan every group from its finished reference run and record the predictions in MLflow;
    the plans, and the groups with no reference to plan from with why."""
    client, experiment_id = experiment_client(settings)
    space_name = settings.search_space().name
    tags = store.sweep_tags(
        settings.mlflow_experiment, space_name, Strategy.ESTIMATE, Role.PREDICTION
    )
    plans: list[GroupPlan] = []
    skipped: dict[str, str] = {}
    for group in groups:
        reference, why = reference_of(settings, client, experiment_id, group)
        if reference is None:
            skipped[group.label] = why
            log.warning("%s: %s; nothing predicted", group.label, why)
            continue
        planned = plan_group(group, reference, estimator, settings.max_drop)
        _log_plan(client, experiment_id, planned, estimator, tags)
        plans.append(planned)
    return plans, skipped


def _log_plan(
    client: MlflowClient,
    experiment_id: str,
    planned: GroupPlan,
    estimator: Estimator,
    tags: dict[str, str],
) -> None:
    """The plan on the reference run, and one prediction run per predicted configuration."""
    run_id = planned.reference.run_id
    plan = {**planned.plan.to_dict(), "estimator": estimator.to_dict()}
    store.log_plan_artifact(client, run_id, plan, PLAN_ARTIFACTS[planned.group.kind])
    if planned.group.kind == TRUNCATION and planned.plan.recommended is not None:
        store.log_metrics(client, run_id, {Metric.RECOMMENDED_LRG: planned.plan.recommended}, 0)
    for config in planned.group.candidates:
        predicted = _prediction(planned, config)
        link = {**tags, Tag.REFERENCE_RUN: run_id}
        store.log_prediction_run(client, experiment_id, config, predicted, link)


def _prediction(planned: GroupPlan, cfg: TrialConfig) -> dict[str, float]:
    """The plan row of ``cfg`` as prediction metrics."""
    table = planned.plan.table
    if planned.group.kind == TRUNCATION:
        grid = cfg.effective_lrg
        row = table.loc[table["lrg"] == grid].iloc[0]
        recommended = planned.plan.recommended == grid
    else:
        row = table.loc[table["annotation_nu_max"] == cfg.annotation_nu_max].iloc[0]
        recommended = planned.plan.recommended == cfg.annotation_nu_max
    names = (
        Metric.R_CE,
        Metric.PREDICTED_DROP,
        Metric.PREDICTED_MIOU,
        Metric.GFLOPS,
        Metric.PREDICTED_FPI,
    )
    out = {name: float(row[name]) for name in names}
    out[Metric.FEASIBLE] = float(bool(row["feasible"]))
    out[Metric.RECOMMENDED] = float(recommended)
    return out


def confirm_trials(plans: list[GroupPlan]) -> list[TrialConfig]:
    """The recommended trials that are not their group's (already trained) reference."""
    out: dict[str, TrialConfig] = {}
    for planned in plans:
        config = planned.recommended_config
        if config is not None and config.key != planned.group.reference_key:
            out.setdefault(config.key, config)
    return list(out.values())


def link_confirmations(settings: SweepSettings, plans: list[GroupPlan]) -> None:
    """Give each confirmation run its reference and the prediction it confirms."""
    client, experiment_id = experiment_client(settings)
    for planned in plans:
        config = planned.recommended_config
        if config is None:
            continue
        run = store.find_config_run(client, experiment_id, config.key, Role.CONFIRM)
        if run is None:
            continue
        run_id = str(run.info.run_id)
        predicted = _prediction(planned, config)
        metrics = {k: v for k, v in predicted.items() if k.startswith("predicted_")}
        store.set_tags(client, run_id, {Tag.REFERENCE_RUN: planned.reference.run_id})
        store.log_metrics(client, run_id, metrics, step=0)


__all__ = [
    "CONFIRM_SUFFIX",
    "EstimateOutcome",
    "check_estimate",
    "confirm_trials",
    "experiment_client",
    "phase_settings",
    "record_predictions",
    "reference_of",
    "run_estimate",
    "start_strategy",
]
