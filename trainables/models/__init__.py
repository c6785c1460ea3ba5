"""Segmentation models: one registry (:mod:`trainables.model_registry`) and one factory,
:func:`build_model`.

``deeplabv3plus`` (DeepLab v3+) and ``dan`` (Deep Aggregation Net), each over any timm backbone
(``features_only=True``, output stride 16). Every model is a :class:`SegmentationModel`:
``forward(x)`` gives logits at the input size, ``.lrg`` sets the decoder grid (feature
truncation), ``.prunable_units()`` lists what soft filter pruning may zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.model_registry import (
    MODELS,
    check_model,
    list_models,
    model_class,
    register_model,
)
from trainables.models.common import SegmentationModel, check_lrg, validate_lrg
from trainables.models.dan import DAN
from trainables.models.deeplabv3plus import DeepLabV3Plus
from trainables.models.encoder import TimmEncoder, check_backbone
from trainables.models.units import Consumer, PrunableUnit


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
    cls = model_class(name)
    check_lrg(lrg)
    model: SegmentationModel = cls(
        backbone=backbone,
        num_classes=num_classes,
        lrg=lrg,
        pretrained=pretrained,
        output_stride=output_stride,
        **kw,
    )
    return model


__all__ = [
    "DAN",
    "MODELS",
    "Consumer",
    "DeepLabV3Plus",
    "PrunableUnit",
    "SegmentationModel",
    "TimmEncoder",
    "build_model",
    "check_backbone",
    "check_model",
    "list_models",
    "register_model",
    "validate_lrg",
]
