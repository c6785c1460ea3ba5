"""Lazy references ``"module:attr"``: how the torch-free registries name what they build."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(path: str) -> Any:
    """The object at ``"module:attr"``, its module imported now."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["resolve"]
