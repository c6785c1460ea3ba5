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
allowed. No Ray import here: the orchestrator turns a space into Tune objects.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import InputError

#: A value a space may hold (YAML/TOML scalars; TOML has no null, write "none").
Scalar = str | int | float | bool | None

TOP_LEVEL_KEYS = ("name", "description", "fixed", "grid", "grids", "derived", "overrides")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SCALAR_TYPES = (str, int, float, bool, type(None))


def trial_fields() -> tuple[str, ...]:
    """The settings a space may set: :class:`TrialConfig` fields (``extra`` included)."""
    return tuple(f.name for f in dataclasses.fields(TrialConfig))


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
            settings = _lookup(table, config[key])
            if settings is None:
                known = ", ".join(_show(v) for v, _ in table)
                raise InputError(
                    f"{self.source}: derived.{key}: no entry for value {_show(config[key])}; "
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
                where = ", ".join(f"{k}={_show(config.get(k))}" for k in _first_keys(self, config))
                raise InputError(f"{self.source}: trial {index} ({where}): {err}") from None
        return tuple(out)

    def __len__(self) -> int:
        return len(self._configs)

    def axes(self) -> dict[str, list[Scalar]]:
        """Each axis with the union of its values over the sub-grids, in first-seen order.

        An axis missing from some sub-grid also takes that sub-grid's value (the fixed
        setting, or the :class:`TrialConfig` default), so a sampler over these axes can reach
        every sub-grid. Used by the Optuna search (one categorical per axis).
        """
        defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
        names: list[str] = []
        for grid in self.grids:
            names.extend(n for n in grid if n not in names)
        out: dict[str, list[Scalar]] = {}
        for name in names:
            values: list[Scalar] = []
            for grid in self.grids:
                candidates = grid.get(name, (self.fixed.get(name, defaults.get(name)),))
                values.extend(v for v in candidates if not _contains(values, v))
            out[name] = values
        return out

    def varying_keys(self) -> list[str]:
        """Settings whose value differs between trials (the columns worth showing)."""
        trials = self._configs
        keys: list[str] = []
        for config in trials:
            keys.extend(k for k in config if k not in keys)
        return [k for k in keys if len({repr(t.get(k)) for t in trials}) > 1]

    # ------------------------------------------------------------------ variants

    def with_overrides(self, overrides: Mapping[str, Any]) -> SearchSpace:
        """The same space with ``overrides`` applied to every trial (re-validated)."""
        merged = {**self.to_dict(), "overrides": {**self.overrides, **overrides}}
        return space_from_dict(merged, source=self.source)

    def with_data_roots(self, roots: Mapping[str, str]) -> SearchSpace:
        """The same space with ``data_root`` set per data set (``{"voc": "/data/VOC"}``)."""
        datasets = {t.dataset for t in self.trials()}
        for name in roots:
            if name not in datasets:
                raise InputError(
                    f"--data-root {name}=...: data set {name!r} is not in space {self.name!r}; "
                    f"its data sets: {', '.join(sorted(str(d) for d in datasets))}"
                )
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
                axis: {_key_text(v): dict(s) for v, s in table}
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
    fixed = _settings(data.get("fixed", {}), f"{source}: fixed")
    grids = _grids(data, source)
    axes = {a for g in grids for a in g}
    clash = sorted(axes & set(fixed))
    if clash:
        raise InputError(
            f"{source}: fixed.{clash[0]}: {clash[0]!r} is also a grid axis; set it in one place"
        )
    derived = _derived(data.get("derived", {}), source, axes | set(fixed))
    overrides = _settings(data.get("overrides", {}), f"{source}: overrides")
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


def _first_keys(space: SearchSpace, config: Mapping[str, Any]) -> list[str]:
    keys = [k for g in space.grids for k in g]
    return list(dict.fromkeys(k for k in keys if k in config))[:5]


def _grids(data: Mapping[str, Any], source: str) -> tuple[dict[str, tuple[Scalar, ...]], ...]:
    if "grid" in data and "grids" in data:
        raise InputError(f"{source}: give either 'grid' (one) or 'grids' (a list), not both")
    if "grid" in data:
        raw: Any = [data["grid"]]
        label = "grid"
    elif "grids" in data:
        raw = data["grids"]
        label = "grids"
        if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
            raise InputError(f"{source}: grids: {raw!r} is not a non-empty list of sub-grids")
    else:
        raise InputError(f"{source}: missing field 'grid' (or 'grids'): axis -> list of values")
    out = []
    for i, grid in enumerate(raw):
        where = f"{source}: {label}" if label == "grid" else f"{source}: grids[{i}]"
        out.append(_grid(grid, where))
    return tuple(out)


def _grid(grid: Any, where: str) -> dict[str, tuple[Scalar, ...]]:
    if not isinstance(grid, Mapping) or not grid:
        raise InputError(f"{where}: {grid!r} is not a mapping of axis -> list of values")
    allowed = trial_fields()
    out: dict[str, tuple[Scalar, ...]] = {}
    for axis, values in grid.items():
        if axis not in allowed or axis == "extra":
            raise InputError(
                f"{where}: unknown axis {axis!r}; allowed: {', '.join(a for a in allowed if a != 'extra')}"
            )
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise InputError(f"{where}.{axis}: {values!r} is not a non-empty list of values")
        checked: list[Scalar] = []
        for value in values:
            _check_scalar(value, f"{where}.{axis}")
            if _contains(checked, value):
                raise InputError(f"{where}.{axis}: value {_show(value)} is listed twice")
            checked.append(value)
        out[axis] = tuple(checked)
    return out


def _settings(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: {raw!r} is not a mapping of setting -> value")
    allowed = trial_fields()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise InputError(f"{where}: unknown setting {key!r}; allowed: {', '.join(allowed)}")
        if key == "extra":
            if not isinstance(value, Mapping):
                raise InputError(f"{where}.extra: {value!r} is not a mapping of option -> value")
            for option, v in value.items():
                _check_scalar(v, f"{where}.extra.{option}")
            out[key] = dict(value)
        elif key == "eval_lrgs" and isinstance(value, Sequence) and not isinstance(value, str):
            for v in value:
                _check_scalar(v, f"{where}.eval_lrgs")
            out[key] = list(value)
        else:
            _check_scalar(value, f"{where}.{key}")
            out[key] = value
    return out


def _derived(
    raw: Any, source: str, known: set[str]
) -> dict[str, tuple[tuple[Scalar, dict[str, Any]], ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InputError(
            f"{source}: derived: {raw!r} is not a mapping of axis -> value -> settings"
        )
    out: dict[str, tuple[tuple[Scalar, dict[str, Any]], ...]] = {}
    for key, table in raw.items():
        where = f"{source}: derived.{key}"
        if key not in known:
            allowed = ", ".join(sorted(known)) or "(none)"
            raise InputError(
                f"{where}: {key!r} is not a grid axis or fixed setting; allowed: {allowed}"
            )
        if not isinstance(table, Mapping) or not table:
            raise InputError(f"{where}: {table!r} is not a mapping of value -> settings")
        entries: list[tuple[Scalar, dict[str, Any]]] = []
        for value, settings in table.items():
            _check_scalar(value, where)
            parsed = _settings(settings, f"{where}.{_key_text(value)}")
            if key in parsed:
                raise InputError(f"{where}.{_key_text(value)}: sets {key!r}, its own key")
            entries.append((value, parsed))
        out[str(key)] = tuple(entries)
    return out


def _check_scalar(value: Any, where: str) -> None:
    if not isinstance(value, _SCALAR_TYPES):
        raise InputError(
            f"{where}: {value!r} is a {type(value).__name__}; allowed: a string, number, "
            "boolean or null"
        )
    if isinstance(value, float) and math.isnan(value):
        raise InputError(f"{where}: nan is not an allowed value")


# ---------------------------------------------------------------------- value matching


def _same(a: Any, b: Any) -> bool:
    """Equal as values, also across file types: 0.2 == "0.2", None == "none", 1 == 1.0."""
    if a is None or b is None:
        return _is_none(a) and _is_none(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in {"none", "null"})


def _contains(values: Iterable[Any], value: Any) -> bool:
    return any(_same(v, value) for v in values)


def _lookup(table: Iterable[tuple[Any, Mapping[str, Any]]], value: Any) -> Mapping[str, Any] | None:
    for key, settings in table:
        if _same(key, value):
            return settings
    return None


def _key_text(value: Any) -> Any:
    return "none" if value is None else value


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
