"""One module per ``spectral-sweep`` sub-command; each has ``register(subparsers)``."""

from __future__ import annotations

from pathlib import Path

from trainables.errors import InputError


def output_dir(value: str, flag: str = "--out") -> Path:
    """The output directory ``value``, created now (before any work) or an InputError."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {value!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{flag} {value!r} cannot be created ({err.strerror})") from None
    return path
