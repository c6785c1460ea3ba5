"""Named search spaces as plain, validated data (no Ray import).

``get_space(name)`` / ``list_spaces()`` for the built-in spaces, ``load_space_file(path)`` for a
YAML/TOML file in the same schema, ``space.trials()`` for the validated ``TrialConfig`` of every trial (``expand(space)`` for
the same trials as plain data).
"""

from __future__ import annotations

from typing import Any

from search_spaces.registry import get_space, list_spaces, load_space_file, resolve_space
from search_spaces.schema import (
    SearchSpace,
    space_from_dict,
    space_of_trials,
    trial_fields,
    validate_trials,
)


def expand(space: SearchSpace) -> list[dict[str, Any]]:
    """The grid's trials as plain data (``space.configs()``); ``space.trials()`` gives them as
    validated ``TrialConfig`` objects."""
    return space.configs()


__all__ = [
    "SearchSpace",
    "expand",
    "get_space",
    "list_spaces",
    "load_space_file",
    "resolve_space",
    "space_from_dict",
    "space_of_trials",
    "trial_fields",
    "validate_trials",
]
