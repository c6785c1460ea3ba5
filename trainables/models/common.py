"""Pieces shared by the segmentation models: conv blocks, resizing, LRG checks, the base class.

:class:`SegmentationModel` holds what both architectures share: the timm encoder, the ``lrg``
(feature-truncation grid) attribute, the native grid, the encoder/decoder split used for FLOPs and
parameter counts, and the encoder's prunable units. Subclasses add their head (ASPP, decoder).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from trainables.errors import InputError
from trainables.models.encoder import TimmEncoder
from trainables.models.units import Consumer, PrunableUnit

#: The smallest LRG: a 3 x 3 grid still holds band nu_max = 1.
MIN_LRG = 3
#: What :meth:`SegmentationModel.encode` hands the decoder: (low, mid, deep) feature maps.
Features = tuple[Tensor, Tensor, Tensor]


class ConvBNAct(nn.Module):
    """Conv (no bias) + BatchNorm + ReLU; named ``conv``, ``bn``, ``act`` for listing units."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size // 2)
        self.conv = nn.Conv2d(
            cin, cout, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def unit(name: str, block: ConvBNAct, kind: Any, *consumers: tuple[nn.Conv2d, int]) -> PrunableUnit:
    """The unit of ``block`` (at module path ``name``) read by ``consumers`` (conv, channel offset).

    Its name is the conv's module path, like the encoder's units.
    """
    return PrunableUnit(
        name=f"{name}.conv",
        conv=block.conv,
        bn=block.bn,
        consumers=tuple(Consumer(conv, offset) for conv, offset in consumers),
        kind=kind,
        act=block.act,
    )


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (``align_corners=False``); the identity when ``x`` already has ``size``."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def check_lrg(lrg: Any) -> int | None:
    """``lrg`` as None or an int >= 3 (the upper bound needs the input: :func:`validate_lrg`)."""
    if lrg is None:
        return None
    if isinstance(lrg, bool) or not isinstance(lrg, Integral) or lrg < MIN_LRG:
        raise InputError(f"lrg {lrg!r} must be None (native grid) or an integer >= {MIN_LRG}")
    return int(lrg)


def validate_lrg(lrg: int | None, native: int) -> int | None:
    """Check ``lrg`` lies in [3, native]: a larger grid would up-sample, not truncate."""
    if lrg is None:
        return None
    if isinstance(lrg, bool) or not isinstance(lrg, Integral) or not MIN_LRG <= lrg <= native:
        raise InputError(
            f"lrg {lrg!r} is outside [{MIN_LRG}, {native}] (the native stride-4 grid "
            f"for this input size)"
        )
    return int(lrg)


class SegmentationModel(nn.Module):
    """Base of the registered models: timm encoder + head; ``forward(x)`` -> logits at input size.

    ``lrg`` (int or None) is the decoder grid s: ``None`` runs the decoder on the native stride-4
    grid, ``s`` resizes the decoder's input features to s x s (feature truncation). It can be set
    at any time (post-hoc truncation of a trained model).
    """

    #: Registry name, set by subclasses.
    name: str = ""

    def __init__(self, encoder: TimmEncoder, num_classes: int, lrg: int | None) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InputError(f"num_classes {num_classes!r} must be a positive integer")
        self.encoder = encoder
        self.num_classes = num_classes
        self._lrg = check_lrg(lrg)
        self._native_cache: dict[int, int] = {}

    @property
    def lrg(self) -> int | None:
        """The decoder grid s (None = native); checked against the input at forward time."""
        return self._lrg

    @lrg.setter
    def lrg(self, value: int | None) -> None:
        self._lrg = check_lrg(value)

    def forward(self, x: Tensor) -> Tensor:
        """Logits at the input size: the decoder on the encoder's features."""
        return self.decode(self.encode(x), (int(x.shape[-2]), int(x.shape[-1])))

    def encode(self, x: Tensor) -> Features:
        """Encoder (+ ASPP) features (stride-4 ``low``, stride-8 ``mid``, deepest ``deep``)."""
        raise NotImplementedError

    def decode(self, features: Features, out_size: tuple[int, int]) -> Tensor:
        """Logits at ``out_size`` from :meth:`encode`'s features (at the decoder grid)."""
        raise NotImplementedError

    def decoder_grid(self, low: Tensor) -> tuple[int, int]:
        """The grid the decoder runs at for stride-4 features ``low``: (s, s) or native."""
        native = (int(low.shape[-2]), int(low.shape[-1]))
        if self._lrg is None:
            return native
        validate_lrg(self._lrg, min(native))
        return (self._lrg, self._lrg)

    def native_grid(self, input_size: int) -> int:
        """The stride-4 feature size the encoder produces for a square input (129 for 513)."""
        if input_size not in self._native_cache:
            self._native_cache[input_size] = self.encoder.low_grid(input_size)
        return self._native_cache[input_size]

    def encoder_modules(self) -> list[nn.Module]:
        """Modules counted as encoder (for FLOPs and parameter splits)."""
        return [self.encoder]

    def decoder_modules(self) -> list[nn.Module]:
        """Modules counted as decoder (for FLOPs and parameter splits)."""
        raise NotImplementedError

    def head_units(self) -> list[PrunableUnit]:
        """Prunable units outside the backbone (ASPP branches, decoder convs)."""
        raise NotImplementedError

    def prunable_units(self) -> list[PrunableUnit]:
        """Every prunable conv: residual-block internals of the backbone, then the head's units."""
        return [*self.encoder.residual_units("encoder.backbone."), *self.head_units()]

    def architecture(self) -> dict[str, Any]:
        """What identifies the architecture (checked when a checkpoint is loaded)."""
        return {
            "name": self.name,
            "backbone": self.encoder.backbone_name,
            "num_classes": self.num_classes,
            "output_stride": self.encoder.output_stride,
        }

    def extra_repr(self) -> str:
        return f"lrg={self._lrg}"


__all__ = [
    "MIN_LRG",
    "ConvBNAct",
    "Features",
    "SegmentationModel",
    "check_lrg",
    "resize",
    "unit",
    "validate_lrg",
]
