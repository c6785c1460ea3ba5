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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analysis.estimator import Estimator
from analysis.strategies.adaptive import AdaptivePlanner
from analysis.strategies.base import (
    ANNOTATION,
    TRUNCATION,
    Candidate,
    Choice,
    GroupProblem,
    Pick,
    Planner,
    StrategyOptions,
)
from analysis.strategies.paper import PaperPlanner
from trainables.errors import InputError

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
