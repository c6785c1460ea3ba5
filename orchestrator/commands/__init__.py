"""One module per ``spectral-sweep`` sub-command; each has ``register(subparsers)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.errors import InputError


def add_tracking_uri(parser: Any) -> None:
    """The ``--tracking-uri`` flag every MLflow-reading or -writing command shares."""
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )


def check_output_dir(value: str, flag: str = "--out") -> Path:
    """``value`` as an output directory that can be written, checked before any work; nothing
    is created yet (bad input elsewhere must leave no empty directory behind)."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {value!r} exists and is not a directory")
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise InputError(f"{flag} {value!r} cannot be created: {str(existing)!r} is a file")
    return path


def make_output_dir(path: Path, flag: str = "--out") -> Path:
    """Create the checked output directory (with its parents)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{flag} {str(path)!r} cannot be created ({err.strerror})") from None
    return path
