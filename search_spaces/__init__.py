"""Named search spaces as plain, validated data (no Ray import).

``get_space(name)`` / ``list_spaces()`` for the built-in spaces, ``load_space_file(path)`` for a
YAML/TOML file in the same schema, ``expand(space)`` for the trials' config dicts.
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
    """The grid's trial configs: plain dicts that ``TrialConfig.from_dict`` accepts."""
    return space.trials()


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
