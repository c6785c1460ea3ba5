"""``paper``: the paper's method. Train each group's reference only and pick by the estimator's
prediction: the least predicted FPI (truncation), the coarsest band predicted within
``max_drop`` (annotation). Its pick may be untrained."""

from __future__ import annotations

from analysis.strategies.base import ANNOTATION, GroupProblem, Pick, Planner, band_order
from trainables.measures import fpi


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
                chosen = min(feasible, key=lambda cd: band_order(cd[0]))
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


__all__ = ["PaperPlanner"]
