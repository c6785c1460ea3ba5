"""The strategies' shared vocabulary: a group as a strategy sees it (:class:`GroupProblem`,
:class:`Candidate`), what it asks to train and why (:class:`Choice`), what it picks (:class:`Pick`),
its knobs (:class:`StrategyOptions`) and the phase protocol every planner follows
(:class:`Planner`). See ``analysis.strategies`` for the registry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.drop_model import DEFAULT_LENGTH
from analysis.estimator import Estimator
from trainables.errors import InputError
from trainables.measures import fpi

TRUNCATION, ANNOTATION = "truncation", "annotation"
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


def band_order(candidate: Candidate) -> float:
    """A label band's coarseness order: the pixel-wise reference is the finest."""
    nu = candidate.annotation_nu_max
    return math.inf if nu is None else float(nu)


def fpi_at(problem: GroupProblem, candidate: Candidate, drop: float) -> float:
    miou = problem.reference_miou * (1.0 - drop)
    return fpi(candidate.gflops, miou) if miou > 0 else math.inf


__all__ = [
    "ANNOTATION",
    "INTERVAL_LEVEL",
    "TRUNCATION",
    "Candidate",
    "Choice",
    "GroupProblem",
    "Pick",
    "Planner",
    "StrategyOptions",
    "band_order",
    "fpi_at",
]
