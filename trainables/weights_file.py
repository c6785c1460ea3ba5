"""The ``pretrained`` weights file's first check, without torch: the dry run and the sweep's
preflight (which must not import torch) and the trial (before it reads the file) say the same."""

from __future__ import annotations

from pathlib import Path

from trainables.errors import InputError


def check_weights_file(path: str | Path) -> Path:
    """``path`` (``~`` expanded) when it is a file; else an InputError naming it."""
    found = Path(path).expanduser()
    if not found.is_file():
        what = "is not a file" if found.exists() else "not found"
        raise InputError(
            f"pretrained {str(path)!r}: weights file {what}; expected false, true or the path "
            "of a weights file"
        )
    return found
