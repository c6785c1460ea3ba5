"""Chosen configurations written back as a space file (``analyze``'s ``optimal_space.yaml``,
``plan --out``), and a space as YAML text (``spaces --show``).

:func:`space_of_configs` builds a validated :class:`SearchSpace` that holds exactly the given
trials, spelled compactly: settings at their :class:`~trainables.config.TrialConfig` default are
left out, settings every trial shares go to ``fixed``, and each trial is a one-point sub-grid of
the rest (``model``, ``dataset``, ``prune_rate`` and ``lrg`` always there, so each line says
which configuration it is). A trial may be partial (a runs CSV without full configs): what it
lacks takes the default, and :func:`missing_settings` names it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from search_spaces.schema import NON_SCALAR_FIELDS, SearchSpace, space_from_dict
from search_spaces.validation import same
from trainables.config import RUN_ONLY_FIELDS, TrialConfig
from trainables.errors import InputError

#: Settings every written trial names in its sub-grid (what tells the configurations apart).
IDENTITY_KEYS: tuple[str, ...] = ("model", "dataset", "prune_rate", "lrg")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def defaults() -> dict[str, Any]:
    """Every TrialConfig field with its default (``eval_lrgs`` as a list, ``extra`` ``{}``)."""
    return TrialConfig().to_dict()


def non_default(config: TrialConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` that differ from TrialConfig's defaults, in field order."""
    values = config.to_dict() if isinstance(config, TrialConfig) else dict(config)
    base = defaults()
    out: dict[str, Any] = {}
    for name in base:
        if name not in values:
            continue
        value = values[name]
        if isinstance(value, tuple):
            value = list(value)
        if value == base[name] or (value in (None, [], {}) and base[name] in (None, [], {})):
            continue
        out[name] = value
    return out


def space_name(text: str) -> str:
    """``text`` as a valid space name (letters, digits, ``-``, ``_``, ``.``)."""
    name = _NAME_CHARS.sub("-", text).strip("-.") or "space"
    return name if name[0].isalnum() else f"s{name}"


def space_of_configs(
    name: str,
    configs: Sequence[TrialConfig | Mapping[str, Any]],
    description: str = "",
    source: str | None = None,
) -> SearchSpace:
    """A validated space holding exactly ``configs`` (see the module docstring).

    Non-scalar settings (``extra``, ``eval_lrgs``) cannot be grid axes: they must agree across
    the trials. Two configurations that are the same trial are an InputError.
    """
    if not configs:
        raise InputError(f"space {name!r}: no configurations to write")
    trials = [non_default(c) for c in configs]
    keys = list(dict.fromkeys(k for t in trials for k in t))
    shared = {
        k: trials[0][k]
        for k in keys
        if k not in IDENTITY_KEYS and all(k in t and same_value(t[k], trials[0][k]) for t in trials)
    }
    for key in NON_SCALAR_FIELDS:
        if key not in shared and any(t.get(key) is not None for t in trials):
            raise InputError(
                f"space {name!r}: {key} differs between the configurations; a space file holds "
                "one value"
            )
    grids = []
    for trial, config in zip(trials, configs, strict=True):
        given = config.to_dict() if isinstance(config, TrialConfig) else config
        grid = {k: [given[k]] for k in IDENTITY_KEYS if given.get(k) is not None}
        grid |= {k: [v] for k, v in trial.items() if k not in shared and k not in grid}
        grids.append(grid or {"model": [TrialConfig().model]})  # a sub-grid needs an axis
    data = {"name": space_name(name), "description": description, "fixed": shared, "grids": grids}
    space = space_from_dict(data, source=source or f"space {name!r}")
    if len(space) != len(configs):
        raise InputError(f"space {name!r}: {len(configs) - len(space)} configuration(s) repeat")
    return space


def same_value(a: Any, b: Any) -> bool:
    """Equal settings (mappings and lists compared whole, scalars as values)."""
    if isinstance(a, Mapping | list) or isinstance(b, Mapping | list):
        return bool(a == b)
    return same(a, b)


def missing_settings(known: Sequence[str], datasets: Sequence[str] = ()) -> list[str]:
    """TrialConfig settings that decide what a trial trains and measures, not among ``known``,
    in field order (run-only settings such as ``device`` are not missing: they do not change
    the result; nor is ``data_root`` when every one of ``datasets`` is generated)."""
    from trainables.dataset_registry import DATASETS

    generated = bool(datasets) and all(
        name in DATASETS and not DATASETS[name].needs_root for name in datasets
    )
    skip = {*known, *RUN_ONLY_FIELDS, *(("data_root",) if generated else ())}
    return [f.name for f in dataclasses.fields(TrialConfig) if f.name not in skip]


def space_yaml(space: SearchSpace, comments: Sequence[str] = ()) -> str:
    """The space as YAML in the ``--space-file`` schema (empty fields left out), after
    ``comments`` as ``#`` lines."""
    import yaml

    data = {k: v for k, v in space.to_dict().items() if v not in ({}, "", [])}
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100).rstrip()
    head = "".join(f"# {line}\n" for line in comments)
    return f"{head}{body}\n"


def write_space(space: SearchSpace, path: str | Path, comments: Sequence[str] = ()) -> Path:
    """Write :func:`space_yaml` to ``path`` (its folder must exist)."""
    file = Path(path)
    try:
        file.write_text(space_yaml(space, comments), encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write space file {str(file)!r} ({err.strerror})") from None
    return file


__all__ = [
    "IDENTITY_KEYS",
    "defaults",
    "missing_settings",
    "non_default",
    "space_name",
    "space_of_configs",
    "space_yaml",
    "write_space",
]
