"""A search space as Tune wants it: the grid's ``param_space`` and points, or an Optuna space.

Search spaces are plain data (``search_spaces``); this module is where they become Ray objects.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ray import tune

from search_spaces import space_from_dict
from trainables.config import TrialConfig


@dataclass(frozen=True)
class OptunaSpace:
    """Optuna define-by-run space that samples trials of the space, fixed and derived settings
    as constants. One sub-grid: one categorical per axis. Several (a union, e.g. an LRG grid
    and a label-band grid): a categorical ``grid`` picks the sub-grid, then its own axes,
    named ``grid<i>.<axis>`` (Optuna keeps one set of choices per name). One categorical per
    axis over all sub-grids would sample their cross product: configurations outside the space
    (an LRG with a label band and a prune rate no sub-grid pairs). Tune puts the sampled
    parameters in the config beside the returned settings: :func:`trial_settings` takes the
    ``grid`` ones out again."""

    space: dict[str, Any]

    def __call__(self, trial: Any) -> dict[str, Any]:
        space = space_from_dict(self.space, source="optuna space")
        grids = space.grids
        if len(grids) <= 1:
            axes = dict(grids[0]) if grids else {}
            values = {a: trial.suggest_categorical(a, list(c)) for a, c in axes.items()}
        else:
            index = trial.suggest_categorical("grid", list(range(len(grids))))
            values = {
                axis: trial.suggest_categorical(f"grid{index}.{axis}", list(choices))
                for axis, choices in grids[index].items()
            }
        return space.resolve(values)


#: Optuna parameters of :class:`OptunaSpace` that are not trial settings.
_GRID_PARAM = re.compile(r"grid(\d+\.|$)")


def trial_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A config Tune's ``OptunaSearch`` suggested, less :class:`OptunaSpace`'s sub-grid
    parameters (``grid``, ``grid<i>.<axis>``): the trial's settings."""
    return {k: v for k, v in config.items() if not _GRID_PARAM.match(k)}


def _trial_defaults() -> dict[str, Any]:
    """Every TrialConfig field at its default."""
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(TrialConfig):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def _all_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Every key any config sets, in first-seen order."""
    keys: list[str] = []
    for config in configs:
        keys.extend(k for k in config if k not in keys)
    return keys


def complete_configs(configs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every trial every key any trial sets (missing ones at the TrialConfig default).

    Needed for ``points_to_evaluate``: a key a point leaves out would be *sampled* from the
    param space, so e.g. an LRG-sweep trial could get a random annotation limit.
    """
    defaults = _trial_defaults()
    keys = _all_keys(configs)
    return [{k: config.get(k, defaults.get(k)) for k in keys} for config in configs]


def grid_param_space(configs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every key of the trials as a Tune domain (constant, or a choice of its values).

    The trials themselves come from ``BasicVariantGenerator(points_to_evaluate=configs)``,
    which needs every key in the param space; Tune's config is then the flat trial dict.
    """
    out: dict[str, Any] = {}
    for key in _all_keys(configs):
        values: list[Any] = []
        for config in configs:
            value = config.get(key)
            if not any(_same_repr(value, v) for v in values):
                values.append(value)
        out[key] = values[0] if len(values) == 1 else tune.choice(values)
    return out


def _same_repr(a: Any, b: Any) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


def max_epochs(trials: Sequence[TrialConfig]) -> int:
    """The most evaluations any trial reports (ASHA's ``max_t``)."""
    return max((t.epochs for t in trials), default=1)


__all__ = ["OptunaSpace", "complete_configs", "grid_param_space", "max_epochs", "trial_settings"]
