"""The one model registry: name -> the constructor, by ``"module:attr"`` path (no torch import)
or, for models registered at run time, the class itself.

:class:`~trainables.config.TrialConfig` validates ``model`` against :data:`MODELS` without
importing torch or timm; :func:`trainables.models.build_model` imports the class from its
``"module:attr"`` path only when a model is built. :func:`register_model` adds one's own
architecture (a :class:`~trainables.models.SegmentationModel` subclass), so ``model: my_unet``
works in a space file; a sweep carries the registrations made in the driver to its Ray workers
(:func:`registered_models`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from trainables.errors import InputError
from trainables.lazy import resolve

#: Registered architectures: name -> ``"module:attr"`` of the constructor taking
#: :func:`trainables.models.build_model`'s keyword arguments, or the constructor itself.
MODELS: dict[str, str | Callable[..., Any]] = {
    "deeplabv3plus": "trainables.models.deeplabv3plus:DeepLabV3Plus",
    "dan": "trainables.models.dan:DAN",
}
#: The built-in names, in registration order (the paper's spaces sweep these).
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

T = TypeVar("T")


def register_model(name: str, model: Any = None) -> Any:
    """Register ``model`` (a class or ``"module:attr"``) as ``name``; as a decorator when
    ``model`` is left out::

        @register_model("my_unet")
        class MyUNet(SegmentationModel): ...

    The constructor takes ``backbone, num_classes, lrg, pretrained, output_stride`` like the
    built-in models. Built-in names cannot be replaced; registering the same name again
    replaces one's own earlier registration (a re-run notebook cell).
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InputError(f"model name {name!r} must be a non-empty name without spaces around")
    if name in MODEL_NAMES:
        raise InputError(f"model name {name!r} is built in; choose another name")

    def add(obj: T) -> T:
        if not (isinstance(obj, str) and ":" in obj) and not callable(obj):
            raise InputError(f"register_model({name!r}): {obj!r} is not a class or 'module:attr'")
        MODELS[name] = obj
        return obj

    return add if model is None else add(model)


def registered_models() -> dict[str, str | Callable[..., Any]]:
    """The registrations beyond the built-in ones (what a sweep ships to its workers)."""
    return {k: v for k, v in MODELS.items() if k not in MODEL_NAMES}


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
    entry = MODELS[name]
    return resolve(entry) if isinstance(entry, str) else entry


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "check_model",
    "list_models",
    "model_class",
    "register_model",
    "registered_models",
]
