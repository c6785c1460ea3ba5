"""The contract between models and soft filter pruning.

A model lists its prunable convolutions as :class:`PrunableUnit` s; ``trainables.pruning`` works on
those alone, so pruning and compaction stay generic over architectures and timm backbones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn


@dataclass(frozen=True)
class Consumer:
    """A convolution that reads the unit's output channels.

    ``offset`` is where the unit's channels start in the consumer's input channels (non-zero when
    the unit's output is concatenated with other tensors before the consumer, as in ASPP's
    projection or the DeepLab v3+ decoder's fuse conv).
    """

    conv: nn.Conv2d
    offset: int = 0


@dataclass(frozen=True)
class PrunableUnit:
    """One prunable conv, its BatchNorm and activation: pruning a filter zeroes its kernel only.

    The BN keeps its weight and bias (soft pruning: the filter still gets gradient and can grow
    back), so a pruned channel emits a constant, ``act(BN(conv bias or 0))``, in eval mode.
    Removing the channel physically folds that constant into the consumers (see
    :mod:`trainables.compaction`), so the compact network equals the masked one.
    """

    name: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    consumers: tuple[Consumer, ...]
    kind: Literal["encoder", "decoder"]
    #: The activation between the BN and the consumers (what the constant goes through).
    act: nn.Module = field(default_factory=nn.ReLU, compare=False)
    extra: dict[str, str] = field(default_factory=dict, compare=False)
