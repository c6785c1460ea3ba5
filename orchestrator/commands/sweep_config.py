"""``sweep --config sweep.yaml``, and the Python API's keyword options: sweep settings as a
mapping keyed by the flags' names, checked like the flags, with the command line on top.

Keys are the flags without dashes (``cpus_per_trial`` or ``cpus-per-trial``); ``set`` and
``data_root`` take a mapping (``set: {epochs: 1}``) or a list of ``KEY=VALUE``; ``space`` a
built-in name, or the space itself as a mapping (inline). Flags given on the command line
override the file: the file's values become the parser's defaults and the command line is
parsed again over them, exactly as argparse treats its own defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainables.errors import InputError

#: Parser destinations that are not settings.
_NOT_SETTINGS = frozenset({"help", "func", "config"})
#: Settings whose value is a list of ``KEY=VALUE`` strings (a mapping is accepted).
_PAIRS = frozenset({"set", "data_root"})


def sweep_parser() -> argparse.ArgumentParser:
    """A standalone ``sweep`` parser (the CLI's own, built the same way)."""
    from orchestrator.cli import OneLineParser
    from orchestrator.commands.sweep import register

    holder = OneLineParser(prog="spectral-sweep")
    sub = holder.add_subparsers(dest="command", parser_class=OneLineParser)
    register(sub)
    parser: argparse.ArgumentParser = sub.choices["sweep"]
    return parser


def settings_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's settings by destination."""
    return {a.dest: a for a in parser._actions if a.dest not in _NOT_SETTINGS}


def load_config(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of settings from ``path`` (one InputError naming the file otherwise)."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"--config {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"--config {path}: expected a mapping of settings, got {type(data).__name__}"
        )
    return data


def check_options(
    options: Mapping[str, Any], parser: argparse.ArgumentParser, source: str
) -> dict[str, Any]:
    """``options`` as parser defaults: names known, values of the flag's type and choices."""
    actions = settings_actions(parser)
    out: dict[str, Any] = {}
    for raw, value in options.items():
        key = str(raw).replace("-", "_")
        if key == "space" and isinstance(value, Mapping):
            out["space_object"] = dict(value)
            continue
        if key not in actions:
            known = ", ".join(sorted(actions))
            raise InputError(f"{source}: unknown setting {raw!r}; expected one of: {known}")
        out[key] = _coerce(actions[key], key, value, source)
    return out


def _coerce(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """One value checked (and converted) the way its flag's parser would."""
    if value is None:
        return None
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise InputError(f"{source}: {key} {value!r} must be true or false")
        return value
    if key in _PAIRS:
        if isinstance(value, Mapping):
            return [f"{k}={_text(v)}" for k, v in value.items()]
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(v) for v in value]
        raise InputError(f"{source}: {key} {value!r} must be a mapping or a list of KEY=VALUE")
    if key == "estimator_from" and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, bool | Mapping | list):
        expected = "a whole number" if action.type is int else "a single value"
        raise InputError(f"{source}: {key} {value!r} must be {expected}")
    if action.type is int and isinstance(value, float):  # int(2.5) would be 2: say so instead
        raise InputError(f"{source}: {key} {value!r} is not a whole number")
    converted = value
    if callable(action.type):
        try:
            converted = action.type(value)
        except (TypeError, ValueError):
            kind = getattr(action.type, "__name__", "value")
            raise InputError(f"{source}: {key} {value!r} is not a valid {kind}") from None
    elif not isinstance(value, str):
        converted = str(value)
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise InputError(f"{source}: {key} {value!r} is not one of: {choices}")
    return converted


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def sweep_namespace(
    options: Mapping[str, Any], argv: Sequence[str] = (), source: str = "settings"
) -> argparse.Namespace:
    """The ``sweep`` command's namespace: ``options`` as defaults, ``argv`` parsed over them."""
    parser = sweep_parser()
    defaults = check_options(options, parser, source)
    space_object = defaults.pop("space_object", None)
    parser.set_defaults(**defaults)
    args = parser.parse_args(list(argv))
    if space_object is not None and args.space is None and args.space_file is None:
        args.space_object = space_object
    return args


__all__ = ["check_options", "load_config", "sweep_namespace", "sweep_parser"]
