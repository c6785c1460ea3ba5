"""The one model registry: name -> where its class lives (no torch import).

:class:`~trainables.config.TrialConfig` validates ``model`` against :data:`MODELS` without
importing torch or timm; :func:`trainables.models.build_model` imports the class from its
``"module:attr"`` path only when a model is built.
"""

from __future__ import annotations

from typing import Any

from trainables.errors import InputError
from trainables.lazy import resolve

#: Registered architectures: name -> ``"module:attr"`` of the constructor taking
#: :func:`trainables.models.build_model`'s keyword arguments.
MODELS: dict[str, str] = {
    "deeplabv3plus": "trainables.models.deeplabv3plus:DeepLabV3Plus",
    "dan": "trainables.models.dan:DAN",
}
#: The registered names, in registration order.
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def list_models() -> list[str]:
    """Names :func:`trainables.models.build_model` accepts."""
    return list(MODELS)


def check_model(name: str) -> None:
    """Raise :class:`InputError` listing the registered names when ``name`` is not one."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")


def model_class(name: str) -> Any:
    """The constructor registered as ``name`` (imported now), or an InputError listing names."""
    check_model(name)
    return resolve(MODELS[name])


__all__ = ["MODELS", "MODEL_NAMES", "check_model", "list_models", "model_class"]
