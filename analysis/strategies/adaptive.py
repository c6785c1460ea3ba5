"""``adaptive``: after the reference, train what is most likely to beat the best measured FPI.

Each phase asks every group for the candidate whose probability of beating the group's best
measured FPI by more than ``tolerance`` is highest under the drop model's belief
(``analysis.drop_model``: the estimator's curve, calibrated on the trained configurations of
groups that behave alike, widened by the cluster's leave-one-out errors, and bounded by the
measured drops at smaller and larger R_ce since the drop grows with R_ce). A group trains it
when that probability is at least ``stop_probability`` and its ``budget`` allows. Its pick is
always trained. Annotation groups: the same on the predicted drop against ``max_drop``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

from analysis.drop_model import Belief, DropModel, Observation
from analysis.estimator import Estimator
from analysis.strategies.base import (
    ANNOTATION,
    INTERVAL_LEVEL,
    TRUNCATION,
    Candidate,
    Choice,
    GroupProblem,
    Pick,
    Planner,
    StrategyOptions,
    band_order,
    fpi_at,
)
from trainables.errors import InputError
from trainables.measures import fpi

_NORMAL = NormalDist()


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
        finest_ok = min(band_order(c) for c in measured)
        out = [
            self._choice(problem, c, beliefs[c.key], max_drop, math.nan)
            for c in problem.candidates
            if c.key in beliefs and band_order(c) < finest_ok
        ]
        likely = sorted(
            (c for c in out if c.probability >= 0.5), key=lambda c: band_order(c.candidate)
        )
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
            predicted_fpi=fpi_at(problem, candidate, belief.mean),
            fpi_low=fpi_at(problem, candidate, belief.mean - z * belief.sd),
            fpi_high=fpi_at(problem, candidate, belief.mean + z * belief.sd),
        )

    def picks(self) -> list[Pick]:
        out = []
        for label, problem in self.problems.items():
            trained = [(c, m) for c, m in self.trained(label) if self._within(problem, m)]
            if problem.kind == ANNOTATION:
                candidate = min(trained, key=lambda cm: band_order(cm[0]))[0]
            else:
                candidate = min(trained, key=lambda cm: (fpi(cm[0].gflops, cm[1]), -cm[0].lrg))[0]
            out.append(Pick(label, problem.kind, candidate, True, len(self.trained(label))))
        return out


__all__ = ["AdaptivePlanner"]
