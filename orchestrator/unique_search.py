"""A Tune searcher around Optuna that never trains a configuration twice and always trains the
reference of every group it samples, so an Optuna sweep can be analysed like a grid.

Optuna samples categorical axes, so in a small space it suggests a configuration it already
suggested. :class:`UniqueConfigs` asks again (telling Optuna the repeat failed, so it moves on)
up to ``max_tries`` times, then declares the search finished. When a suggestion opens a new group
(same settings but the LRG and label band), the group's reference (the native grid, pixel-wise
labels) is trained first and the suggestion right after: drops and the estimator need it.
Its own state (what it suggested, what waits) is saved beside Optuna's, so ``--resume`` keeps it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ray.tune.search import Searcher

from orchestrator.param_space import trial_settings
from trainables.config import TrialConfig


def reference_of(config: dict[str, Any]) -> dict[str, Any]:
    """The group's reference of a trial dict: its native grid and pixel-wise labels."""
    return {**config, "lrg": None, "annotation_nu_max": None}


def key_of(config: dict[str, Any]) -> str:
    """The configuration's identity (``TrialConfig.key``: the same training, the same key)."""
    return TrialConfig.from_dict(config).key


def group_of(config: dict[str, Any]) -> str:
    """What a group shares: everything but the LRG and the label band."""
    cfg = TrialConfig.from_dict(config)
    return dataclasses.replace(cfg.canonical(), lrg=None, annotation_nu_max=None).key


class UniqueConfigs(Searcher):
    """See the module docstring; ``searcher`` is Tune's ``OptunaSearch``."""

    def __init__(self, searcher: Searcher, max_tries: int = 200) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.max_tries = max_tries
        self.seen: set[str] = set()  # configuration keys handed out
        self.groups: set[str] = set()  # groups whose reference was handed out
        self.waiting: list[tuple[str, dict[str, Any]]] = []  # (searcher's id, config) to hand out
        self.inner_id: dict[str, str] = {}  # Tune trial id -> the searcher's trial id
        self.probes = 0
        self.repeats = 0  # suggestions refused as repeats

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return bool(self.searcher.set_search_properties(metric, mode, config, **spec))

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return bool(self.searcher.set_max_concurrency(max_concurrent))

    def suggest(self, trial_id: str) -> dict[Any, Any] | None:
        if self.waiting:
            inner, waiting = self.waiting.pop(0)
            return self._hand_out(trial_id, inner, waiting)
        for _ in range(self.max_tries):
            inner = f"{trial_id}.{self.probes}"
            self.probes += 1
            config = self.searcher.suggest(inner)
            if config is None or config == Searcher.FINISHED:
                return config  # nothing now (concurrency), or Optuna is done
            config = trial_settings(config)  # less the sub-grid choice (OptunaSpace)
            if key_of(config) in self.seen:
                self.repeats += 1
                self.searcher.on_trial_complete(inner, result=None, error=True)
                continue
            group = group_of(config)
            reference = reference_of(config)
            first = group not in self.groups
            self.groups.add(group)
            if first and key_of(reference) not in {*self.seen, key_of(config)}:
                self.waiting.append((inner, config))  # the reference first, then the sample
                return self._hand_out(trial_id, None, reference)
            return self._hand_out(trial_id, inner, config)
        finished: Any = Searcher.FINISHED  # Tune's "no more trials" (a string)
        return finished

    def _hand_out(self, trial_id: str, inner: str | None, config: dict[str, Any]) -> dict[str, Any]:
        self.seen.add(key_of(config))
        if inner is not None:
            self.inner_id[trial_id] = inner
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.inner_id:
            self.searcher.on_trial_result(self.inner_id[trial_id], result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        inner = self.inner_id.pop(trial_id, None)
        if inner is not None:  # references are ours: Optuna did not suggest them
            self.searcher.on_trial_complete(inner, result=result, error=error)

    # ------------------------------------------------------------------ resume

    def get_state(self) -> dict[str, Any]:
        """Its own state; Tune's search generator saves the wrapped Optuna search apart."""
        keys = ("seen", "groups", "waiting", "inner_id", "probes", "repeats")
        return copy.deepcopy({k: getattr(self, k) for k in keys})

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


__all__ = ["UniqueConfigs", "group_of", "key_of", "reference_of"]
