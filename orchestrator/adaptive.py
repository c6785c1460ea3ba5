"""``--strategy adaptive`` live: references, then phases of trainings chosen by the planner.

1. references: every group's reference trial (as ``--strategy estimate``), role ``reference``;
2. each group becomes a :class:`~analysis.strategies.GroupProblem`: the reference run is read
   back from MLflow (mIoU, R_ce curve) and every candidate's FLOPs are counted (no training);
3. phases: :class:`~analysis.strategies.AdaptivePlanner` names at most one training per
   unfinished group; the phase runs as one Tune sweep (Tune experiment ``<name>-adaptive<i>``,
   role ``candidate``, several groups' trainings side by side so the slots stay busy); each run
   gets why it was chosen (tag ``spectral_sweep.reason``, metrics ``predicted_drop``,
   ``predicted_drop_sd``, ``predicted_fpi`` with its interval, ``probability_better``,
   ``best_fpi_before``, ``phase``) beside what it measured; then the next phase is planned;
4. the picks: each reference run gets ``adaptive_plan.json`` (every choice with its reason, the
   pick) and, for truncation groups, the metric ``recommended_lrg``.

The planner is a pure function of the measurements, so ``--resume`` replays it: a phase whose
trainings all have FINISHED runs is read back from MLflow, an interrupted one is resumed by
Tune, and nothing is trained or logged twice.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.plan import curve_at
from analysis.strategies import (
    AdaptivePlanner,
    Candidate,
    Choice,
    GroupProblem,
    Pick,
    StrategyOptions,
)
from analysis.strategy import TRUNCATION, EstimateGroup
from orchestrator import store
from orchestrator.settings import SweepOutcome, SweepSettings
from orchestrator.strategy import (
    experiment_client,
    phase_settings,
    reference_of,
    start_strategy,
)
from trainables.config import TrialConfig
from trainables.grids import band_of_lrg, native_band
from trainables.run_schema import Artifact, Metric, Role, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from analysis.references import ReferenceRun

log = logging.getLogger(__name__)

PHASE_SUFFIX = "-adaptive"


@dataclass
class AdaptiveOutcome:
    """What the adaptive strategy did: its phases, choices and picks."""

    references: SweepOutcome
    phases: list[SweepOutcome] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    #: Groups with no reference to plan from, and why (``strategy.reference_of``).
    skipped: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # trainings that failed (group stopped)

    @property
    def trainings(self) -> int:
        """Configurations the strategy trained: references plus every choice (also those a
        resumed sweep read back instead of training again)."""
        return self.references.total + len(self.choices)

    @property
    def phase_count(self) -> int:
        """Phases after the references."""
        return max((c.phase for c in self.choices), default=0)

    @property
    def interrupted(self) -> bool:
        return any(p.unfinished for p in [self.references, *self.phases])

    @property
    def errored(self) -> int:
        return sum(p.errored for p in [self.references, *self.phases])


def strategy_options(settings: SweepSettings) -> StrategyOptions:
    """The planner's knobs from the sweep's settings."""
    options = StrategyOptions(
        tolerance=settings.tolerance,
        budget=settings.budget,
        max_drop=settings.max_drop,
        stop_probability=settings.stop_probability,
    )
    options.check()
    return options


def run_adaptive(settings: SweepSettings, *, resume: bool = False) -> AdaptiveOutcome:
    """Run (or resume) the adaptive strategy; see the module docstring for its phases."""
    from orchestrator.tune import has_sweep, run_sweep

    options = strategy_options(settings)  # its knobs checked before the references train
    estimator, groups, references = start_strategy(settings, resume)
    outcome = AdaptiveOutcome(references=references)
    if outcome.references.unfinished:
        return outcome
    client, experiment_id = experiment_client(settings)
    problems, configs, runs = _problems(settings, client, experiment_id, groups, outcome)
    planner = AdaptivePlanner(problems, estimator, options)
    while True:
        batch = planner.next_batch()
        if not batch:
            break
        trials = [configs[c.candidate.key] for c in batch]
        phase = phase_settings(settings, trials, f"{PHASE_SUFFIX}{planner.phase}", Role.CANDIDATE)
        if not _all_finished(client, experiment_id, trials):
            done = run_sweep(phase, resume=has_sweep(phase.experiment_path), save=False)
            outcome.phases.append(done)
            if done.unfinished:
                return outcome
        _record(client, experiment_id, planner, batch, outcome)
    outcome.choices, outcome.picks = list(planner.choices), planner.picks()
    _log_picks(client, runs, outcome)
    return outcome


def _problems(
    settings: SweepSettings,
    client: MlflowClient,
    experiment_id: str,
    groups: list[EstimateGroup],
    outcome: AdaptiveOutcome,
) -> tuple[list[GroupProblem], dict[str, TrialConfig], dict[str, str]]:
    """Each group with a finished reference as the planner sees it; the candidates' configs
    by key; each group's reference run id."""
    problems, configs, runs = [], {}, {}
    for group in groups:
        reference, why = reference_of(settings, client, experiment_id, group)
        if reference is None:
            outcome.skipped[group.label] = why
            log.warning("%s: %s; not planned", group.label, why)
            continue
        problems.append(_problem(group, reference))
        configs.update({c.key: c for c in group.candidates})
        runs[_label(group)] = reference.run_id
    return problems, configs, runs


def _label(group: EstimateGroup) -> str:
    return f"{group.kind}: {group.label}" + (
        "" if group.kind == TRUNCATION else f" / LRG {group.reference.effective_lrg}"
    )


def _problem(group: EstimateGroup, reference: ReferenceRun) -> GroupProblem:
    """A group's problem: its reference's mIoU, and per candidate the FLOPs counted for the
    reference's architecture and the reference's R_ce at the candidate's band."""
    ref_cfg = group.reference
    if group.kind == TRUNCATION:
        lrgs = sorted({c.effective_lrg for c in group.candidates} | {ref_cfg.effective_lrg})
        gflops = reference.grid_gflops(list(lrgs))
    else:
        gflops = {ref_cfg.effective_lrg: reference.gflops(None)}

    def candidate(cfg: TrialConfig) -> Candidate:
        nu = cfg.annotation_nu_max
        band = band_of_lrg(cfg.effective_lrg) if nu is None else float(nu)
        if nu is None and group.kind != TRUNCATION:  # pixel-wise labels: the image's own band
            band = native_band(cfg.input_size)
        cost = gflops.get(cfg.effective_lrg, gflops[ref_cfg.effective_lrg])
        return Candidate(cfg.key, cfg.effective_lrg, curve_at(reference.curve, band), cost, nu)

    context = [ref_cfg.model, ref_cfg.dataset, ref_cfg.backbone, str(ref_cfg.input_size)]
    if group.kind != TRUNCATION:
        context.append(str(ref_cfg.effective_lrg))
    return GroupProblem(
        label=_label(group),
        kind=group.kind,
        cluster="|".join([group.kind, *context]),
        reference=candidate(ref_cfg),
        reference_miou=reference.miou,
        candidates=tuple(candidate(c) for c in group.candidates),
    )


def _all_finished(client: MlflowClient, experiment_id: str, trials: list[TrialConfig]) -> bool:
    runs = [store.find_config_run(client, experiment_id, t.key, Role.CANDIDATE) for t in trials]
    return all(r is not None and r.info.status == "FINISHED" for r in runs)


def _record(
    client: MlflowClient,
    experiment_id: str,
    planner: AdaptivePlanner,
    batch: list[Choice],
    outcome: AdaptiveOutcome,
) -> None:
    """Hand each training's measured mIoU to the planner and write why it was chosen on its
    run; a failed training stops its group (its pick comes from what was measured)."""
    for choice in batch:
        run = store.find_config_run(client, experiment_id, choice.candidate.key, Role.CANDIDATE)
        miou = _final_miou(run)
        if run is None or miou is None:
            outcome.failed.append(f"{choice.group}: {choice.candidate.name}")
            planner.abandon(choice)
            continue
        planner.record(choice, miou)
        run_id = str(run.info.run_id)
        store.set_tags(client, run_id, {Tag.REASON: choice.reason()[:5000]})
        store.log_metrics(client, run_id, _why(choice), step=0)


def _final_miou(run: Any) -> float | None:
    if run is None or run.info.status != "FINISHED":
        return None
    value = run.data.metrics.get(Metric.MIOU)
    return float(value) if value is not None and math.isfinite(value) else None


def _why(choice: Choice) -> dict[str, float]:
    values = {
        Metric.PREDICTED_DROP: choice.predicted_drop,
        Metric.PREDICTED_DROP_SD: choice.drop_sd,
        Metric.PREDICTED_FPI: choice.predicted_fpi,
        Metric.PREDICTED_FPI_LOW: choice.fpi_low,
        Metric.PREDICTED_FPI_HIGH: choice.fpi_high,
        Metric.PROBABILITY_BETTER: choice.probability,
        Metric.BEST_FPI_BEFORE: choice.best_fpi,
        Metric.PHASE: float(choice.phase),
    }
    return {k: float(v) for k, v in values.items() if math.isfinite(v)}


def _log_picks(client: MlflowClient, runs: dict[str, str], outcome: AdaptiveOutcome) -> None:
    """Each reference run gets its group's choices and pick (``adaptive_plan.json``)."""
    for pick in outcome.picks:
        run_id = runs[pick.group]
        plan = {
            "group": pick.group,
            "kind": pick.kind,
            "pick": _candidate_dict(pick.candidate),
            "trainings": pick.trainings,
            "choices": [
                {**_candidate_dict(c.candidate), "reason": c.reason()}
                for c in outcome.choices
                if c.group == pick.group
            ],
        }
        name = Artifact.ADAPTIVE_PLAN_JSON.replace(".json", f"_{pick.kind}.json")
        store.log_plan_artifact(client, run_id, plan, name)
        if pick.kind == TRUNCATION:
            store.log_metrics(
                client, run_id, {Metric.RECOMMENDED_LRG: float(pick.candidate.lrg)}, 0
            )


def _candidate_dict(candidate: Candidate) -> dict[str, Any]:
    return {
        "config_key": candidate.key,
        "lrg": candidate.lrg,
        "annotation_nu_max": candidate.annotation_nu_max,
        "gflops": candidate.gflops,
        "r_ce": candidate.r_ce,
    }


__all__ = ["PHASE_SUFFIX", "AdaptiveOutcome", "run_adaptive", "strategy_options"]
