"""The search-space schema: plain data in, a validated :class:`SearchSpace` out.

A space is a mapping (a Python dict, or a YAML/TOML file with the same keys)::

    name: demo                      # required; letters, digits, '-', '_'
    description: one line           # optional
    fixed: {input_size: 65}         # settings shared by every trial
    grids:                          # a union of sub-grids (or `grid:` for a single one);
      - {model: [dan], lrg: [17, 9]}  # each is axis -> list of values, crossed
    derived:                        # settings that follow an axis value
      dataset: {voc: {lr: 0.0007, epochs: 100}}
    overrides: {epochs: 1}          # optional; applied last to every trial

Every axis, fixed, derived and override key must be a :class:`~trainables.config.TrialConfig`
field. A trial is ``fixed`` + one combination of a sub-grid's axes + the ``derived`` settings of
its values + ``overrides``; identical trials from different sub-grids are kept once. The space is
checked when it is built (shape, names, types, and every trial through ``TrialConfig.from_dict``),
so a bad space fails before anything starts, with the file, the field, the value and what is
allowed (the checks are in :mod:`search_spaces.validation`). No Ray import here: the
orchestrator turns a space into Tune objects.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from search_spaces.validation import (
    Scalar,
    key_text,
    lookup,
    parse_derived,
    parse_grids,
    parse_settings,
    show,
    trial_fields,
)
from trainables.config import TrialConfig
from trainables.errors import InputError

TOP_LEVEL_KEYS = ("name", "description", "fixed", "grid", "grids", "derived", "overrides")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: :meth:`trials` are its validated TrialConfigs (expanded once),
    :meth:`configs` the same trials as the plain data the space spells."""

    name: str
    description: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    grids: tuple[Mapping[str, tuple[Scalar, ...]], ...] = ()
    #: axis -> ((value, {setting: value}), ...); pairs, so float/str keys from files match.
    derived: Mapping[str, tuple[tuple[Scalar, Mapping[str, Any]], ...]] = field(
        default_factory=dict
    )
    overrides: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # where it came from ("built-in space 'demo'" or a file path), for errors

    # ------------------------------------------------------------------ expansion

    def combinations(self) -> list[dict[str, Scalar]]:
        """Axis values of every trial, sub-grid by sub-grid, duplicates removed (first kept)."""
        out: list[dict[str, Scalar]] = []
        for grid in self.grids:
            names = list(grid)
            for values in itertools.product(*(grid[n] for n in names)):
                out.append(dict(zip(names, values, strict=True)))
        return out

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """One trial's config: fixed, then ``values`` (the axes), derived settings, overrides."""
        config: dict[str, Any] = {**self.fixed, **values}
        for key, table in self.derived.items():
            if key not in config:
                continue
            settings = lookup(table, config[key])
            if settings is None:
                known = ", ".join(show(v) for v, _ in table)
                raise InputError(
                    f"{self.source}: derived.{key}: no entry for value {show(config[key])}; "
                    f"entries: {known}"
                )
            config.update(settings)
        config.update(self.overrides)
        return config

    def configs(self) -> list[dict[str, Any]]:
        """Every trial as the plain data the space spells (only the settings it sets): the view
        for tables and for Ray's ``param_space``. Expanded once; a copy each call."""
        return [dict(c) for c in self._configs]

    def trials(self) -> tuple[TrialConfig, ...]:
        """Every trial as a validated :class:`TrialConfig`, expanded and checked once."""
        return self._trials

    @functools.cached_property
    def _configs(self) -> tuple[dict[str, Any], ...]:
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for combo in self.combinations():
            config = self.resolve(combo)
            key = repr(sorted(config.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                out.append(config)
        return tuple(out)

    @functools.cached_property
    def _trials(self) -> tuple[TrialConfig, ...]:
        out = []
        for index, config in enumerate(self._configs):
            try:
                out.append(TrialConfig.from_dict(config))
            except InputError as err:
                where = ", ".join(f"{k}={show(config.get(k))}" for k in _first_keys(self, config))
                raise InputError(f"{self.source}: trial {index} ({where}): {err}") from None
        return tuple(out)

    def __len__(self) -> int:
        return len(self._configs)

    def varying_keys(self) -> list[str]:
        """Settings whose value differs between trials (the columns worth showing)."""
        trials = self._configs
        keys: list[str] = []
        for config in trials:
            keys.extend(k for k in config if k not in keys)
        return [k for k in keys if len({repr(t.get(k)) for t in trials}) > 1]

    # ------------------------------------------------------------------ variants

    def with_overrides(self, overrides: Mapping[str, Any]) -> SearchSpace:
        """The same space with ``overrides`` applied to every trial (re-validated).

        An override that makes trials identical (``lrg=8`` on a grid over ``lrg``) would
        silently shrink the sweep: it is an InputError naming the key and the count.
        """
        merged = {**self.to_dict(), "overrides": {**self.overrides, **overrides}}
        space = space_from_dict(merged, source=self.source)
        if len(space) < len(self):
            raise InputError(_collapse_message(self, space, overrides))
        return space

    def with_data_roots(self, roots: Mapping[str, str]) -> SearchSpace:
        """The same space with ``data_root`` set per data set (``{"voc": "/data/VOC"}``)."""
        from trainables.dataset_registry import check_root_applies

        datasets = {t.dataset for t in self.trials()}
        for name in roots:
            if name not in datasets:
                raise InputError(
                    f"--data-root {name}=...: data set {name!r} is not in space {self.name!r}; "
                    f"its data sets: {', '.join(sorted(str(d) for d in datasets))}"
                )
            check_root_applies(name, f"{name}=...")
        data = self.to_dict()
        table = {str(k): dict(v) for k, v in data["derived"].get("dataset", {}).items()}
        for name, root in roots.items():
            table.setdefault(name, {})["data_root"] = root
        for dataset in datasets:  # every data set needs an entry once the table exists
            table.setdefault(str(dataset), {})
        data["derived"]["dataset"] = table
        return space_from_dict(data, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file schema (``space_from_dict(s.to_dict())`` rebuilds ``s``)."""
        return {
            "name": self.name,
            "description": self.description,
            "fixed": dict(self.fixed),
            "grids": [{k: list(v) for k, v in g.items()} for g in self.grids],
            "derived": {
                axis: {key_text(v): dict(s) for v, s in table}
                for axis, table in self.derived.items()
            },
            "overrides": dict(self.overrides),
        }


# ---------------------------------------------------------------------- parsing


def space_from_dict(data: Mapping[str, Any], source: str = "space") -> SearchSpace:
    """Validate plain data in the schema and build a :class:`SearchSpace`.

    Raises :class:`InputError` naming ``source``, the field, the value and what is allowed.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: a space must be a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise InputError(
            f"{source}: unknown field {unknown[0]!r}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
        )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"{source}: name: {name!r} is not a valid space name; allowed: letters, digits, "
            "'-', '_', '.' (starting with a letter or digit)"
        )
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        raise InputError(f"{source}: description: {description!r} is not a string")
    fixed = parse_settings(data.get("fixed", {}), f"{source}: fixed")
    grids = parse_grids(data, source)
    axes = {a for g in grids for a in g}
    clash = sorted(axes & set(fixed))
    if clash:
        raise InputError(
            f"{source}: fixed.{clash[0]}: {clash[0]!r} is also a grid axis; set it in one place"
        )
    derived = parse_derived(data.get("derived", {}), source, axes | set(fixed))
    overrides = parse_settings(data.get("overrides", {}), f"{source}: overrides")
    space = SearchSpace(
        name=name,
        description=description.strip(),
        fixed=fixed,
        grids=grids,
        derived=derived,
        overrides=overrides,
        source=source,
    )
    validate_trials(space)
    return space


#: Settings whose values are not scalars, so they cannot be grid axes.
NON_SCALAR_FIELDS = ("extra", "eval_lrgs")


def space_of_trials(
    name: str, trials: Sequence[Mapping[str, Any]], description: str = ""
) -> SearchSpace:
    """A space holding exactly ``trials`` (a one-point sub-grid each): a strategy's phase.

    The non-scalar settings (``extra``, ``eval_lrgs``) cannot be axes: they go to ``fixed``
    and must agree across the trials.
    """
    if not trials:
        raise InputError(f"space {name!r}: no trials")
    fixed: dict[str, Any] = {}
    for key in NON_SCALAR_FIELDS:
        values = [t[key] for t in trials if key in t]
        if not values:
            continue
        if len(values) < len(trials) or any(v != values[0] for v in values):
            raise InputError(
                f"space {name!r}: {key} differs between trials; a strategy phase needs one value"
            )
        fixed[key] = values[0]
    grids = [{k: [v] for k, v in t.items() if k not in NON_SCALAR_FIELDS} for t in trials]
    data = {"name": name, "description": description, "fixed": fixed, "grids": grids}
    return space_from_dict(data, source=f"space {name!r}")


def validate_trials(space: SearchSpace) -> None:
    """Expand and check every trial (once; the space keeps them); the error names the trial."""
    space.trials()


def _collapse_message(before: SearchSpace, after: SearchSpace, overrides: Mapping[str, Any]) -> str:
    """Which override keys make trials identical, and how many."""
    varying = before.varying_keys()
    keys = [k for k in overrides if k in varying] or list(overrides)
    setting = ", ".join(f"{k}={overrides[k]}" for k in keys)
    values = "; ".join(
        f"{k} takes {', '.join(dict.fromkeys(show(c.get(k)) for c in before.configs()))}"
        for k in keys
        if k in varying
    )
    why = values or "it sets what tells them apart"
    return (
        f"override {setting} makes {_identical(before, overrides)} of the {len(before)} trials "
        f"of space {before.name!r} identical ({len(after)} distinct left; {why}): an override "
        "applies to every trial, so narrow the grid in a space file instead (`spectral-sweep "
        "spaces --show NAME`)"
    )


def _identical(before: SearchSpace, overrides: Mapping[str, Any]) -> int:
    """How many trials of ``before`` share their configuration with another once ``overrides``
    apply (overrides come last, as in :meth:`SearchSpace.resolve`)."""
    counts: dict[str, int] = {}
    for config in before.configs():
        key = repr(sorted({**config, **overrides}.items(), key=lambda kv: kv[0]))
        counts[key] = counts.get(key, 0) + 1
    return sum(n for n in counts.values() if n > 1)


def _first_keys(space: SearchSpace, config: Mapping[str, Any]) -> list[str]:
    keys = [k for g in space.grids for k in g]
    return list(dict.fromkeys(k for k in keys if k in config))[:5]


__all__ = [
    "NON_SCALAR_FIELDS",
    "TOP_LEVEL_KEYS",
    "Scalar",
    "SearchSpace",
    "space_from_dict",
    "space_of_trials",
    "trial_fields",
    "validate_trials",
]
