"""What the adaptive strategy believes about an untrained configuration's mIoU drop.

The estimator (``analysis.estimator``) gives a pooled curve ``f(R_ce)`` fitted on other sweeps.
A group (one model, data set and prune rate) departs from it in two ways the paper's data show:
its whole curve is scaled (Cityscapes with heavy pruning drops far less than the pooled line
says), and its shape bends ("positive while non-linear"). So the drop of a group's
configuration at ``R`` is modelled as a Gaussian process

    drop(R) = f(R) * (k + h(R)) + noise,

- ``k``, the group's scale: prior mean from the other trained configurations of its cluster
  (same model and data set: groups that behave alike), prior spread ``scale_spread`` (how far
  one data set's scale departs from the pooled line, measured on the fit's own clusters), plus
  ``between`` (how far groups of one cluster, e.g. prune rates, depart from each other: measured
  on the cluster's trained configurations once two groups have some, so the data say whether the
  prune rate matters);
- ``h(R)``, the shape: relative deviations with spread ``relative_residual`` (the fit's RMS
  relative residual) times the least-squares leverage at ``R`` (wider where the estimator
  extrapolates), correlated over ``length`` in ``ln R``, so a measured neighbour pins its
  neighbours and a far band stays uncertain;
- noise: half the fit's residual standard deviation (at least 0.002), the measurement's own
  scatter.

Every spread comes from the estimator's residuals (``Estimator.relative_residual``,
``scale_spread``, ``residual_std``); the one set number is the correlation length. The group's
measured configurations, the reference's drop 0 at its own R_ce among them, condition the process
(:meth:`DropModel.predict`): the posterior mean and standard deviation per candidate, in closed
form (a few points per group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.estimator import Estimator

#: Correlation length of the shape deviations, in ln R_ce: bands whose R_ce differ by a factor
#: e^0.7 = 2 share half their deviation (the paper's LRG steps change R_ce by 1.3 to 3 times).
DEFAULT_LENGTH = 0.7
#: Fall-backs where an estimator lacks its statistics (a file of old, a tiny fit).
FALLBACK_RELATIVE = 0.5
FALLBACK_SCALE_SPREAD = 0.3
#: Predictions below this are floored: relative deviations of a zero prediction mean nothing.
MIN_PREDICTION = 1e-3
MIN_NOISE = 0.002
#: ... and capped: a drop of 1 is an mIoU of 0, the most any configuration can lose.
MAX_PREDICTION = 1.0


@dataclass(frozen=True)
class Observation:
    """A measured configuration: the reference's R_ce at its band and its relative drop."""

    r_ce: float
    drop: float


@dataclass(frozen=True)
class Belief:
    """A candidate's predicted drop: posterior mean and standard deviation."""

    mean: float
    sd: float


@dataclass(frozen=True)
class Scale:
    """A cluster's scale factor ``k`` seen from one group: mean and variance."""

    mean: float
    var: float


class DropModel:
    """The Gaussian process above, for one estimator (see the module docstring)."""

    def __init__(self, estimator: Estimator, length: float = DEFAULT_LENGTH) -> None:
        self.estimator = estimator
        self.length = length
        rel = estimator.relative_residual
        spread = estimator.scale_spread
        self.relative = rel if math.isfinite(rel) and rel > 0 else FALLBACK_RELATIVE
        self.scale_spread = (
            spread if math.isfinite(spread) and spread > 0 else FALLBACK_SCALE_SPREAD
        )
        std = estimator.residual_std
        self.noise = max(0.5 * std if math.isfinite(std) else 0.0, MIN_NOISE)

    def base(self, r_ce: float) -> float:
        """The estimator's prediction, floored at :data:`MIN_PREDICTION`."""
        return min(max(self.estimator.predict_drop(max(r_ce, 0.0)), MIN_PREDICTION), MAX_PREDICTION)

    def scale(self, others: Sequence[Sequence[Observation]], between: float | None = None) -> Scale:
        """The scale factor of a group from the trained configurations of the *other* groups of
        its cluster (one list per group), around the prior 1 +- ``scale_spread``.

        ``between`` is the variance of scales between groups of one cluster; None: estimated
        from ``others`` (:meth:`between_groups`)."""
        prior_var = self.scale_spread**2
        spread = self.between_groups(others) if between is None else between
        precision, weighted = 1.0 / prior_var, 1.0 / prior_var
        for group in others:
            for obs in group:
                f = self.base(obs.r_ce)
                var = self.noise**2 + (self.relative**2 + spread) * f * f
                precision += f * f / var
                weighted += f * obs.drop / var
        return Scale(weighted / precision, 1.0 / precision + spread)

    def between_groups(self, others: Sequence[Sequence[Observation]]) -> float:
        """Variance of the scale between groups of a cluster: half the prior's until two groups
        have a configuration trained, then the spread of their measured scales (at least
        0.05^2, at most the prior's)."""
        prior = self.scale_spread**2
        ratios = []
        for group in others:
            usable = [o for o in group if self.base(o.r_ce) > 0.01]
            if usable:
                f = np.array([self.base(o.r_ce) for o in usable])
                d = np.array([o.drop for o in usable])
                ratios.append(float(np.sum(f * d) / np.sum(f * f)))
        if len(ratios) < 2:
            return prior / 2
        spread = float(np.var(ratios, ddof=1))
        return min(max(spread, 0.05**2), prior)

    def predict(
        self, scale: Scale, measured: Sequence[Observation], r_ce: Sequence[float]
    ) -> list[Belief]:
        """Posterior drop at each ``r_ce`` given the group's ``measured`` configurations."""
        if not measured:
            return [self._prior(scale, r) for r in r_ce]
        xs = [o.r_ce for o in measured]
        gram = np.array([[self._kernel(scale, a, b) for b in xs] for a in xs])
        gram += self.noise**2 * np.eye(len(xs))
        residual = np.array([o.drop - scale.mean * self.base(o.r_ce) for o in measured])
        solve = np.linalg.solve(gram, residual)
        out = []
        for r in r_ce:
            cross = np.array([self._kernel(scale, r, b) for b in xs])
            mean = scale.mean * self.base(r) + float(cross @ solve)
            var = self._kernel(scale, r, r) - float(cross @ np.linalg.solve(gram, cross))
            out.append(Belief(mean, math.sqrt(max(var, 0.0) + self.noise**2)))
        return out

    def _prior(self, scale: Scale, r: float) -> Belief:
        var = self._kernel(scale, r, r) + self.noise**2
        return Belief(scale.mean * self.base(r), math.sqrt(var))

    def leverage(self, r_ce: float) -> float:
        """The least-squares prediction variance factor ``1 + 1/n + (g - mean_g)^2 / Sxx`` at
        ``r_ce``: how much less the fit knows there than at its own points (1 when the
        estimator lacks its statistics). It widens the shape deviations far from the data the
        estimator was fitted on (e.g. R_ce 0.6 from a fit whose points end at 0.15)."""
        est = self.estimator
        if not (est.n > 2 and math.isfinite(est.feature_mean) and est.feature_sxx > 0):
            return 1.0
        g = est.feature(max(r_ce, 0.0))
        return 1.0 + 1.0 / est.n + (g - est.feature_mean) ** 2 / est.feature_sxx

    def _kernel(self, scale: Scale, a: float, b: float) -> float:
        """Covariance of the drops at R_ce ``a`` and ``b``: scale and shape, both times f; the
        shape's spread grows with the fit's leverage at each."""
        la, lb = math.log(max(a, 1e-6)), math.log(max(b, 1e-6))
        spread = self.relative**2 * math.sqrt(self.leverage(a) * self.leverage(b))
        shape = spread * math.exp(-((la - lb) ** 2) / (2 * self.length**2))
        return self.base(a) * self.base(b) * (scale.var + shape)


__all__ = ["DEFAULT_LENGTH", "Belief", "DropModel", "Observation", "Scale"]
