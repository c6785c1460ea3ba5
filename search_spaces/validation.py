"""Checks of a search space's plain data, and value matching across file types (no Ray).

:func:`search_spaces.schema.space_from_dict` builds a space from these: each check raises an
:class:`~trainables.errors.InputError` naming where (``source: field``), the value and what is
allowed. Values from YAML, TOML and Python compare as values (:func:`same`: 0.2 == "0.2").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import InputError

#: A value a space may hold (YAML/TOML scalars; TOML has no null, write "none").
Scalar = str | int | float | bool | None

_SCALAR_TYPES = (str, int, float, bool, type(None))


def trial_fields() -> tuple[str, ...]:
    """The settings a space may set: :class:`TrialConfig` fields (``extra`` included)."""
    return tuple(f.name for f in dataclasses.fields(TrialConfig))


# ---------------------------------------------------------------------- parsing


def parse_grids(data: Mapping[str, Any], source: str) -> tuple[dict[str, tuple[Scalar, ...]], ...]:
    """The sub-grids of ``grid:`` (one) or ``grids:`` (a list), each checked by :func:`parse_grid`."""
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
        out.append(parse_grid(grid, where))
    return tuple(out)


def parse_grid(grid: Any, where: str) -> dict[str, tuple[Scalar, ...]]:
    """One sub-grid: TrialConfig fields (not ``extra``) -> non-empty lists of distinct scalars."""
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
            check_scalar(value, f"{where}.{axis}")
            if contains(checked, value):
                raise InputError(f"{where}.{axis}: value {show(value)} is listed twice")
            checked.append(value)
        out[axis] = tuple(checked)
    return out


def parse_settings(raw: Any, where: str) -> dict[str, Any]:
    """``fixed``/``overrides``-style settings: TrialConfig fields -> scalars (``extra`` a mapping)."""
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
                check_scalar(v, f"{where}.extra.{option}")
            out[key] = dict(value)
        elif key == "eval_lrgs" and isinstance(value, Sequence) and not isinstance(value, str):
            for v in value:
                check_scalar(v, f"{where}.eval_lrgs")
            out[key] = list(value)
        else:
            check_scalar(value, f"{where}.{key}")
            out[key] = value
    return out


def parse_derived(
    raw: Any, source: str, known: set[str]
) -> dict[str, tuple[tuple[Scalar, dict[str, Any]], ...]]:
    """``derived``: axis or fixed setting -> value -> settings (not setting the axis itself)."""
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
            check_scalar(value, where)
            parsed = parse_settings(settings, f"{where}.{key_text(value)}")
            if key in parsed:
                raise InputError(f"{where}.{key_text(value)}: sets {key!r}, its own key")
            entries.append((value, parsed))
        out[str(key)] = tuple(entries)
    return out


def check_scalar(value: Any, where: str) -> None:
    """An InputError at ``where`` unless ``value`` is a string, number, boolean or null (not nan)."""
    if not isinstance(value, _SCALAR_TYPES):
        raise InputError(
            f"{where}: {value!r} is a {type(value).__name__}; allowed: a string, number, "
            "boolean or null"
        )
    if isinstance(value, float) and math.isnan(value):
        raise InputError(f"{where}: nan is not an allowed value")


# ---------------------------------------------------------------------- value matching


def same(a: Any, b: Any) -> bool:
    """Equal as values, also across file types: 0.2 == "0.2", None == "none", 1 == 1.0."""
    if a is None or b is None:
        return is_none(a) and is_none(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def is_none(value: Any) -> bool:
    """None, or the strings "none"/"null" (TOML has no null)."""
    return value is None or (isinstance(value, str) and value.lower() in {"none", "null"})


def contains(values: Iterable[Any], value: Any) -> bool:
    """Whether ``values`` holds ``value`` by :func:`same`."""
    return any(same(v, value) for v in values)


def lookup(table: Iterable[tuple[Any, Mapping[str, Any]]], value: Any) -> Mapping[str, Any] | None:
    """The settings of ``value``'s entry in a derived table (matched by :func:`same`), or None."""
    for key, settings in table:
        if same(key, value):
            return settings
    return None


def key_text(value: Any) -> Any:
    """A derived table key as the file spells it (None as "none")."""
    return "none" if value is None else value


def show(value: Any) -> str:
    """A value for error messages (strings quoted)."""
    return repr(value) if isinstance(value, str) else str(value)


__all__ = [
    "Scalar",
    "check_scalar",
    "contains",
    "is_none",
    "key_text",
    "lookup",
    "parse_derived",
    "parse_grid",
    "parse_grids",
    "parse_settings",
    "same",
    "show",
    "trial_fields",
]
