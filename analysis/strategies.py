"""Sweep-skipping strategies, one registry: what to train after each group's reference.

A strategy sees what it would have had live: each group's reference (its mIoU and its R_ce at
every candidate's band), every candidate's FLOPs, and the measured mIoU of exactly the
configurations it asks to train. It runs in phases: :meth:`Planner.next_batch` names at most one
training per unfinished group (so a live sweep keeps its slots busy with several groups at
once), :meth:`Planner.record` hands back each measurement, and :meth:`Planner.picks` says what it
chose. The same planner drives a live sweep (``orchestrator.strategy``) and a replay on a
finished sweep (``analysis.backtest``), so a backtest is the live strategy, not an imitation.

- ``paper``: train the reference only and pick the least predicted FPI with the linear
  estimator (the paper's method; an annotation group's pick is the coarsest band predicted
  within ``max_drop``). Its pick may be untrained.
- ``adaptive``: after the reference, train the candidate most likely to beat the best measured
  FPI by more than ``tolerance``, given the drop model's belief (``analysis.drop_model``: the
  estimator's prediction interval, calibrated on the trained configurations of groups that
  behave alike); stop when no untrained candidate is likely to (probability below
  ``stop_probability``) or the group's ``budget`` is spent. Its pick is always trained.
  Annotation groups: the same on the predicted drop against ``max_drop`` (the coarsest band
  measured within it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from analysis.drop_model import DEFAULT_LENGTH, Belief, DropModel, Observation
from analysis.estimator import Estimator
from trainables.errors import InputError
from trainables.measures import fpi

TRUNCATION, ANNOTATION = "truncation", "annotation"
_NORMAL = NormalDist()
#: Two-sided level of the predicted-FPI interval shown beside each choice.
INTERVAL_LEVEL = 0.9


@dataclass(frozen=True)
class Candidate:
    """One configuration of a group: its grid or label band, FLOPs and regressor."""

    key: str  # what identifies it to the caller (TrialConfig.key live, a row id in a replay)
    lrg: int
    r_ce: float  # the reference's R_ce at this configuration's band
    gflops: float
    annotation_nu_max: float | None = None  # None: pixel-wise labels

    @property
    def name(self) -> str:
        """``LRG 33`` or ``nu_max 8``: how tables and reasons name it."""
        if self.annotation_nu_max is None:
            return f"LRG {self.lrg}"
        return f"nu_max {self.annotation_nu_max:g}"


@dataclass(frozen=True)
class GroupProblem:
    """A group as a strategy sees it after its reference was trained."""

    label: str
    kind: str  # TRUNCATION or ANNOTATION
    cluster: str  # groups that behave alike (kind, model, data set, context but the prune rate)
    reference: Candidate
    reference_miou: float
    candidates: tuple[Candidate, ...]  # every other configuration of the group

    @property
    def size(self) -> int:
        """Configurations in the group, the reference included."""
        return 1 + len(self.candidates)


@dataclass
class Choice:
    """One training a strategy asked for, why, and (once recorded) what it measured."""

    group: str
    candidate: Candidate
    phase: int
    predicted_drop: float
    drop_sd: float
    probability: float  # of beating the best measured FPI by > tolerance (annotation: feasible)
    best_fpi: float  # the best measured FPI when it was chosen
    predicted_fpi: float
    fpi_low: float  # INTERVAL_LEVEL interval of the predicted FPI
    fpi_high: float
    measured_miou: float = math.nan
    measured_drop: float = math.nan

    @property
    def measured_fpi(self) -> float:
        return fpi(self.candidate.gflops, self.measured_miou)

    def reason(self) -> str:
        """One line: what was predicted, and (once known) what was measured."""
        text = (
            f"phase {self.phase}: {self.candidate.name} predicted drop {self.predicted_drop:.3f} "
            f"+- {self.drop_sd:.3f}, FPI {self.predicted_fpi:.4g} "
            f"[{self.fpi_low:.4g}, {self.fpi_high:.4g}], P(better) {self.probability:.2f} "
            f"against best FPI {self.best_fpi:.4g}"
        )
        if math.isfinite(self.measured_miou):
            text += f"; measured drop {self.measured_drop:.3f}, FPI {self.measured_fpi:.4g}"
        return text


@dataclass(frozen=True)
class Pick:
    """A strategy's choice for one group."""

    group: str
    kind: str
    candidate: Candidate
    trained: bool  # whether the pick itself was trained (adaptive: always)
    trainings: int  # configurations of this group trained, the reference included
    predicted_drop: float = math.nan  # the paper's prediction of an untrained pick


@dataclass(frozen=True)
class StrategyOptions:
    """Knobs of the strategies (each a CLI flag of ``backtest`` and ``sweep``)."""

    tolerance: float = 0.01  # adaptive: an improvement smaller than this share is not worth it
    budget: int | None = None  # trainings per group, the reference included; None: no limit
    max_drop: float | None = None  # largest acceptable relative mIoU drop
    stop_probability: float = 0.1  # adaptive: stop when no candidate is more likely to improve
    length: float = DEFAULT_LENGTH  # adaptive: the drop model's correlation length (ln R_ce)

    def check(self) -> None:
        """Values in range, or an InputError naming the flag."""
        if not 0.0 <= self.tolerance < 1.0:
            raise InputError(f"--tolerance {self.tolerance} is not a fraction in [0, 1)")
        if self.budget is not None and self.budget < 1:
            raise InputError(f"--budget {self.budget} must be >= 1 (the reference is one)")
        if self.max_drop is not None and not 0.0 <= self.max_drop < 1.0:
            raise InputError(f"--max-drop {self.max_drop} is not a fraction in [0, 1)")
        if not 0.0 < self.stop_probability < 1.0:
            raise InputError(f"--stop-probability {self.stop_probability} is not in (0, 1)")


class Planner:
    """Phases of one strategy over a set of groups (see the module docstring)."""

    name = "base"

    def __init__(
        self,
        problems: Sequence[GroupProblem],
        estimator: Estimator,
        options: StrategyOptions | None = None,
    ) -> None:
        self.problems = {p.label: p for p in problems}
        self.estimator = estimator
        self.options = options or StrategyOptions()
        self.options.check()
        self.choices: list[Choice] = []  # every training asked for, in order
        self.phase = 0

    def next_batch(self) -> list[Choice]:
        """The next phase's trainings (at most one per group); empty when every group is done."""
        return []

    def record(self, choice: Choice, miou: float) -> None:
        """The measured mIoU of a configuration this planner asked for."""
        problem = self.problems[choice.group]
        choice.measured_miou = float(miou)
        choice.measured_drop = (problem.reference_miou - miou) / problem.reference_miou

    def abandon(self, choice: Choice) -> None:
        """A training that failed: forget it; its group asks for nothing more."""
        self.choices.remove(choice)
        self.stop(choice.group)

    def stop(self, label: str) -> None:
        """Ask for nothing more in this group (base planners ask for nothing anyway)."""

    def trained(self, label: str) -> list[tuple[Candidate, float]]:
        """A group's measured configurations with their mIoU, the reference first."""
        problem = self.problems[label]
        out = [(problem.reference, problem.reference_miou)]
        out += [
            (c.candidate, c.measured_miou)
            for c in self.choices
            if c.group == label and math.isfinite(c.measured_miou)
        ]
        return out

    def picks(self) -> list[Pick]:
        """One pick per group."""
        raise NotImplementedError


class PaperPlanner(Planner):
    """The paper's method: the reference only; pick by the estimator's prediction."""

    name = "paper"

    def picks(self) -> list[Pick]:
        return [self._pick(p) for p in self.problems.values()]

    def _pick(self, problem: GroupProblem) -> Pick:
        max_drop = self.options.max_drop
        scored = [(problem.reference, 0.0)]
        scored += [(c, max(0.0, self.estimator.predict_drop(c.r_ce))) for c in problem.candidates]
        feasible = [(c, d) for c, d in scored if d < 1.0 and (max_drop is None or d <= max_drop)]
        if problem.kind == ANNOTATION:
            # labels cost no FLOPs: the coarsest band predicted within max_drop
            chosen = problem.reference, 0.0
            if max_drop is not None:
                chosen = min(feasible, key=lambda cd: _band(cd[0]))
        else:
            # least predicted FPI; ties go to the larger grid (analysis.plan.recommend)
            chosen = min(
                feasible,
                key=lambda cd: (
                    fpi(cd[0].gflops, problem.reference_miou * (1 - cd[1])),
                    -cd[0].lrg,
                ),
            )
        candidate, drop = chosen
        is_ref = candidate.key == problem.reference.key
        return Pick(problem.label, problem.kind, candidate, is_ref, 1, drop)


class AdaptivePlanner(Planner):
    """Train what is most likely to beat the best measured FPI; stop when nothing is likely to."""

    name = "adaptive"

    def __init__(
        self,
        problems: Sequence[GroupProblem],
        estimator: Estimator,
        options: StrategyOptions | None = None,
    ) -> None:
        super().__init__(problems, estimator, options)
        self.model = DropModel(estimator, self.options.length)
        self.stopped: set[str] = set()  # groups whose training failed

    def stop(self, label: str) -> None:
        self.stopped.add(label)

    def next_batch(self) -> list[Choice]:
        """Every group is asked again each phase: a group that wanted nothing may want a
        training once its cluster's measurements moved the calibration. Empty: no group has a
        candidate likely enough to beat its best measured FPI (or budget is spent)."""
        if any(not math.isfinite(c.measured_miou) for c in self.choices):
            raise InputError("record every training of the last phase before asking for more")
        self.phase += 1
        batch = []
        for label, problem in self.problems.items():
            if label in self.stopped:
                continue
            choice = self._choose(problem)
            if choice is not None:
                batch.append(choice)
        self.choices.extend(batch)
        return batch

    def beliefs(self, problem: GroupProblem) -> dict[str, Belief]:
        """The drop model's belief about each untrained candidate of ``problem``, widened by
        its cluster's :meth:`inflation`."""
        trained = {c.key for c, _ in self.trained(problem.label)}
        untrained = [c for c in problem.candidates if c.key not in trained]
        widen = self.inflation(problem.cluster)
        beliefs = self._predict(problem, [c.r_ce for c in untrained])
        return {
            c.key: Belief(b.mean, b.sd * widen) for c, b in zip(untrained, beliefs, strict=True)
        }

    def _predict(
        self, problem: GroupProblem, r_ce: Sequence[float], without: str | None = None
    ) -> list[Belief]:
        """The model's belief at ``r_ce`` from the cluster's measurements (all but the
        configuration ``without``)."""
        others = [
            self._observations(other, without)[1:]  # references (drop 0) say nothing of scale
            for other in self.problems.values()
            if other.cluster == problem.cluster and other.label != problem.label
        ]
        scale = self.model.scale(others)
        return self.model.predict(scale, self._observations(problem, without), r_ce)

    def inflation(self, cluster: str) -> float:
        """How much wider the cluster's beliefs must be: the RMS of the leave-one-out
        standardised errors ``(measured - predicted) / sd`` of its trained candidates (each
        predicted from every other measurement) when above 1, else 1. A cluster the model
        explains keeps its intervals; one it does not (an estimator far off) widens them."""
        z = []
        for choice in self.choices:
            problem = self.problems[choice.group]
            if problem.cluster != cluster or not math.isfinite(choice.measured_drop):
                continue
            key = choice.candidate.key
            (belief,) = self._predict(problem, [choice.candidate.r_ce], without=key)
            z.append((choice.measured_drop - belief.mean) / max(belief.sd, 1e-9))
        return max(1.0, math.sqrt(sum(v * v for v in z) / len(z))) if z else 1.0

    def _observations(self, problem: GroupProblem, without: str | None = None) -> list[Observation]:
        ref = problem.reference_miou
        return [
            Observation(c.r_ce, (ref - m) / ref)
            for c, m in self.trained(problem.label)
            if c.key != without
        ]

    def _choose(self, problem: GroupProblem) -> Choice | None:
        trained = self.trained(problem.label)
        if self.options.budget is not None and len(trained) >= self.options.budget:
            return None
        beliefs = self.beliefs(problem)
        if not beliefs:
            return None
        score = self._truncation_score if problem.kind == TRUNCATION else self._annotation_score
        ranked = score(problem, beliefs)
        if not ranked or ranked[0].probability < self.options.stop_probability:
            return None
        return ranked[0]

    def _best_fpi(self, problem: GroupProblem) -> float:
        feasible = [
            fpi(c.gflops, m) for c, m in self.trained(problem.label) if self._within(problem, m)
        ]
        return min(feasible)

    def _within(self, problem: GroupProblem, miou: float) -> bool:
        drop = (problem.reference_miou - miou) / problem.reference_miou
        return self.options.max_drop is None or drop <= self.options.max_drop + 1e-12

    def _truncation_score(
        self, problem: GroupProblem, beliefs: Mapping[str, Belief]
    ) -> list[Choice]:
        """Candidates by the probability that they beat the best measured FPI by more than the
        tolerance (and stay within max_drop); ties: the lower predicted FPI."""
        best = self._best_fpi(problem)
        ref = problem.reference_miou
        out = []
        for candidate in problem.candidates:
            belief = beliefs.get(candidate.key)
            if belief is None:
                continue
            # FPI_c < best (1 - tol)  <=>  drop < 1 - gflops / (ref * best * (1 - tol))
            bound = 1.0 - candidate.gflops / (ref * best * (1.0 - self.options.tolerance))
            if self.options.max_drop is not None:
                bound = min(bound, self.options.max_drop)
            out.append(self._choice(problem, candidate, belief, bound, best))
        return sorted(out, key=lambda c: (-round(c.probability, 6), c.predicted_fpi))

    def _annotation_score(
        self, problem: GroupProblem, beliefs: Mapping[str, Belief]
    ) -> list[Choice]:
        """Bands coarser than the coarsest measured within max_drop, by their probability of
        being within it: the coarsest likely one (P >= 0.5) first, else the most likely."""
        max_drop = self.options.max_drop
        if max_drop is None:
            return []  # nothing to decide: labels cost no FLOPs
        measured = [c for c, m in self.trained(problem.label) if self._within(problem, m)]
        finest_ok = min(_band(c) for c in measured)
        out = [
            self._choice(problem, c, beliefs[c.key], max_drop, math.nan)
            for c in problem.candidates
            if c.key in beliefs and _band(c) < finest_ok
        ]
        likely = sorted((c for c in out if c.probability >= 0.5), key=lambda c: _band(c.candidate))
        return likely or sorted(out, key=lambda c: -c.probability)

    def _monotone_range(self, problem: GroupProblem, r_ce: float) -> tuple[float, float]:
        """Where the drop at ``r_ce`` can lie if the drop grows with R_ce (the paper: "positive
        while non-linear"): at least the largest measured drop at a smaller R_ce, at most the
        smallest at a larger one, each loosened by two noise deviations."""
        margin = 2.0 * self.model.noise
        lower, upper = -math.inf, math.inf
        for obs in self._observations(problem):
            if obs.r_ce < r_ce:
                lower = max(lower, obs.drop - margin)
            elif obs.r_ce > r_ce:
                upper = min(upper, obs.drop + margin)
        return lower, max(upper, lower)

    def _choice(
        self, problem: GroupProblem, candidate: Candidate, belief: Belief, bound: float, best: float
    ) -> Choice:
        sd = max(belief.sd, 1e-9)
        # P(drop < bound) under the belief truncated to the monotone range
        lower, upper = self._monotone_range(problem, candidate.r_ce)
        mass = _NORMAL.cdf((upper - belief.mean) / sd) - _NORMAL.cdf((lower - belief.mean) / sd)
        inside = _NORMAL.cdf((min(bound, upper) - belief.mean) / sd) - _NORMAL.cdf(
            (lower - belief.mean) / sd
        )
        probability = max(inside, 0.0) / mass if mass > 1e-12 else float(bound >= lower)
        z = _NORMAL.inv_cdf(0.5 + INTERVAL_LEVEL / 2)
        return Choice(
            group=problem.label,
            candidate=candidate,
            phase=self.phase,
            predicted_drop=belief.mean,
            drop_sd=belief.sd,
            probability=probability,
            best_fpi=best,
            predicted_fpi=_fpi_at(problem, candidate, belief.mean),
            fpi_low=_fpi_at(problem, candidate, belief.mean - z * belief.sd),
            fpi_high=_fpi_at(problem, candidate, belief.mean + z * belief.sd),
        )

    def picks(self) -> list[Pick]:
        out = []
        for label, problem in self.problems.items():
            trained = [(c, m) for c, m in self.trained(label) if self._within(problem, m)]
            if problem.kind == ANNOTATION:
                candidate = min(trained, key=lambda cm: _band(cm[0]))[0]
            else:
                candidate = min(trained, key=lambda cm: (fpi(cm[0].gflops, cm[1]), -cm[0].lrg))[0]
            out.append(Pick(label, problem.kind, candidate, True, len(self.trained(label))))
        return out


def _band(candidate: Candidate) -> float:
    """A label band's coarseness order: the pixel-wise reference is the finest."""
    nu = candidate.annotation_nu_max
    return math.inf if nu is None else float(nu)


def _fpi_at(problem: GroupProblem, candidate: Candidate, drop: float) -> float:
    miou = problem.reference_miou * (1.0 - drop)
    return fpi(candidate.gflops, miou) if miou > 0 else math.inf


#: The strategies by name.
STRATEGY_REGISTRY: dict[str, Callable[..., Planner]] = {
    PaperPlanner.name: PaperPlanner,
    AdaptivePlanner.name: AdaptivePlanner,
}


def strategy_names() -> list[str]:
    """The registered strategy names."""
    return list(STRATEGY_REGISTRY)


def make_planner(
    name: str,
    problems: Sequence[GroupProblem],
    estimator: Estimator,
    options: StrategyOptions | None = None,
) -> Planner:
    """A planner of strategy ``name`` (InputError listing the names for an unknown one)."""
    if name not in STRATEGY_REGISTRY:
        raise InputError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_REGISTRY)}")
    return STRATEGY_REGISTRY[name](problems, estimator, options)


@dataclass
class Replay:
    """A planner run to its end against a lookup of measurements."""

    planner: Planner
    picks: list[Pick] = field(default_factory=list)


def run_planner(planner: Planner, measure: Callable[[Sequence[Choice]], Sequence[float]]) -> Replay:
    """Ask for phases until the planner is done, measuring each phase with ``measure`` (the
    mIoU of each choice, in order): a table lookup in a backtest, Ray Tune live."""
    while True:
        batch = planner.next_batch()
        if not batch:
            break
        for choice, miou in zip(batch, measure(batch), strict=True):
            planner.record(choice, miou)
    return Replay(planner, planner.picks())


__all__ = [
    "ANNOTATION",
    "STRATEGY_REGISTRY",
    "TRUNCATION",
    "AdaptivePlanner",
    "Candidate",
    "Choice",
    "GroupProblem",
    "PaperPlanner",
    "Pick",
    "Planner",
    "Replay",
    "StrategyOptions",
    "make_planner",
    "run_planner",
    "strategy_names",
]
