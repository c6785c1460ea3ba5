"""Segmentation models: one registry and one factory, :func:`build_model`.

``deeplabv3plus`` (DeepLab v3+) and ``dan`` (Deep Aggregation Net), each over any timm backbone
(``features_only=True``, output stride 16). Every model is a :class:`SegmentationModel`:
``forward(x)`` gives logits at the input size, ``.lrg`` sets the decoder grid (feature
truncation), ``.prunable_units()`` lists what soft filter pruning may zero.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainables.errors import InputError
from trainables.models.common import SegmentationModel, check_lrg, validate_lrg
from trainables.models.dan import DAN
from trainables.models.deeplabv3plus import DeepLabV3Plus
from trainables.models.encoder import check_backbone
from trainables.models.units import Consumer, PrunableUnit

#: Registered architectures: name -> constructor taking build_model's keyword arguments.
MODELS: dict[str, Callable[..., SegmentationModel]] = {
    "deeplabv3plus": DeepLabV3Plus,
    "dan": DAN,
}


def list_models() -> list[str]:
    """Names :func:`build_model` accepts."""
    return list(MODELS)


def check_model(name: str) -> None:
    """Raise :class:`InputError` listing the registered names when ``name`` is not one."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")


def build_model(
    name: str,
    backbone: str = "resnet101",
    num_classes: int = 21,
    lrg: int | None = None,
    pretrained: bool | str | Path = False,
    output_stride: int = 16,
    **kw: Any,
) -> SegmentationModel:
    """Build a registered model with a timm encoder.

    ``pretrained``: False (random weights, nothing downloaded), True (timm hub weights; needs
    network) or a path to a local state-dict file loaded into the encoder backbone.
    ``lrg``: the decoder grid s (None = native stride-4 grid); checked against the input size at
    forward time and by :func:`validate_lrg`.
    """
    check_model(name)
    check_lrg(lrg)
    return MODELS[name](
        backbone=backbone,
        num_classes=num_classes,
        lrg=lrg,
        pretrained=pretrained,
        output_stride=output_stride,
        **kw,
    )


__all__ = [
    "DAN",
    "MODELS",
    "Consumer",
    "DeepLabV3Plus",
    "PrunableUnit",
    "SegmentationModel",
    "build_model",
    "check_backbone",
    "check_model",
    "list_models",
    "validate_lrg",
]
