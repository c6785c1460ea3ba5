"""One registry of named spaces, plus loading a space from a YAML or TOML file."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from search_spaces.builtin import BUILTIN_SPACES
from search_spaces.schema import SearchSpace, space_from_dict
from trainables.errors import InputError

FILE_SUFFIXES = (".yaml", ".yml", ".toml")


@cache
def _registry() -> dict[str, SearchSpace]:
    spaces = {}
    for data in BUILTIN_SPACES:
        space = space_from_dict(data, source=f"built-in space {data['name']!r}")
        spaces[space.name] = space
    return spaces


def list_spaces() -> list[str]:
    """Names of the built-in spaces."""
    return list(_registry())


def get_space(name: str) -> SearchSpace:
    """A built-in space by name; an unknown name lists the valid ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise InputError(
            f"unknown search space {name!r}; choose from: {', '.join(list_spaces())} "
            "(or pass --space-file FILE)"
        ) from None


def load_space_file(path: str | Path) -> SearchSpace:
    """Read and validate a space from a ``.yaml``/``.yml``/``.toml`` file (same schema)."""
    file = Path(path)
    if file.suffix.lower() not in FILE_SUFFIXES:
        raise InputError(
            f"{file}: unsupported space file type {file.suffix or '(none)'!r}; "
            f"allowed: {', '.join(FILE_SUFFIXES)}"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{file}: space file not found") from None
    except OSError as err:
        raise InputError(f"{file}: cannot read space file ({err.strerror})") from None
    return space_from_dict(_parse(file, text), source=str(file))


def _parse(file: Path, text: str) -> Any:
    if file.suffix.lower() == ".toml":
        toml = _toml_module()
        try:
            return toml.loads(text)
        except toml.TOMLDecodeError as err:
            raise InputError(f"{file}: not valid TOML ({err})") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()
        raise InputError(f"{file}: not valid YAML ({' '.join(s.strip() for s in first)})") from None


def _toml_module() -> Any:
    """``tomllib`` (Python >= 3.11) or the ``tomli`` back-port."""
    import importlib

    for name in ("tomllib", "tomli"):  # tomli: the back-port for Python 3.10
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise InputError("reading TOML space files on Python 3.10 needs `pip install tomli`")


def resolve_space(name: str | None = None, file: str | Path | None = None) -> SearchSpace:
    """The space the CLI asked for: ``--space NAME`` or ``--space-file FILE`` (exactly one)."""
    if (name is None) == (file is None):
        raise InputError("give exactly one of --space NAME or --space-file FILE")
    return get_space(name) if name is not None else load_space_file(file)  # type: ignore[arg-type]
