"""One module per ``spectral-sweep`` sub-command; each has ``register(subparsers)``."""

from __future__ import annotations

import os
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


def add_max_drop(parser: Any, prefix: str = "") -> None:
    """The ``--max-drop`` flag of the commands that pick an LRG (``prefix``: its context)."""
    parser.add_argument(
        "--max-drop",
        type=float,
        default=None,
        metavar="D",
        help=f"{prefix}largest acceptable predicted relative mIoU drop, e.g. 0.02",
    )


def add_estimator_from(parser: Any) -> None:
    """``--estimator-from E1,E2``: fit the estimator on experiments of the tracking store."""
    parser.add_argument(
        "--estimator-from",
        default=None,
        metavar="E1,E2",
        help="fit the estimator on every finished run of these MLflow experiments (every "
        "sweep teaches the next) instead of --estimator",
    )


def parse_experiments(value: str | None) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; an empty name is an InputError."""
    if value is None:
        return []
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise InputError(f"--estimator-from {value!r}: expected experiment names E1,E2")
    return names


def check_max_drop(value: float | None) -> None:
    """A given ``--max-drop`` is a fraction in [0, 1)."""
    if value is not None and not 0.0 <= value < 1.0:
        raise InputError(f"--max-drop {value} is not a fraction in [0, 1)")


def check_output_dir(value: str, flag: str = "--out") -> Path:
    """``value`` as an output directory that can be written, checked before any work; nothing
    is created yet (bad input elsewhere must leave no empty directory behind)."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {value!r} exists and is not a directory")
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise InputError(f"{flag} {value!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {value!r} is not writable ({str(existing)!r})")
    return path


def make_output_dir(path: Path, flag: str = "--out") -> Path:
    """Create the checked output directory (with its parents)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{flag} {str(path)!r} cannot be created ({err.strerror})") from None
    return path
