"""ASPP (atrous spatial pyramid pooling) and the base of the models whose encoder ends in it.

ASPP: a 1x1 branch, three 3x3 branches dilated 6/12/18 (at output stride 16; scaled by
16 / output stride) and an image-pooling branch, 256 channels each with BN + ReLU, projected
1280 -> 256 (1x1) + dropout 0.1. DeepLab v3+ and DAN share it (the paper gives DAN DeepLab's
encoder), so :class:`ASPPSegmentationModel` wires timm encoder + ASPP + a decoder once.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from trainables.errors import InputError
from trainables.models.common import ConvBNAct, Features, SegmentationModel, unit
from trainables.models.encoder import TimmEncoder
from trainables.models.units import PrunableUnit

ASPP_CHANNELS = 256


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool, 1x1 conv + BN + ReLU, broadcast to the grid."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.block = ConvBNAct(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(self.pool(x)).expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling; part of the encoder (its FLOPs do not depend on the LRG)."""

    def __init__(self, cin: int, rates: tuple[int, int, int], cout: int = ASPP_CHANNELS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNAct(cin, cout, 1), *(ConvBNAct(cin, cout, 3, dilation=r) for r in rates)]
        )
        self.pooling = ASPPPooling(cin, cout)
        self.project = ConvBNAct(cout * (len(rates) + 2), cout, 1)
        self.dropout = nn.Dropout(0.1)
        self.out_channels = cout

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x))
        return self.dropout(self.project(torch.cat(outs, dim=1)))

    def units(self, prefix: str) -> list[PrunableUnit]:
        """Each branch (pooling included) -> the projection conv at its offset in the concat.

        Offsets follow the branches' current widths, so they stay right on a compacted copy.
        """
        blocks = [*self.branches, self.pooling.block]
        names = [f"{prefix}branches.{i}" for i in range(len(self.branches))]
        names.append(f"{prefix}pooling.block")
        units, offset = [], 0
        for name, block in zip(names, blocks, strict=True):
            units.append(unit(name, block, "encoder", (self.project.conv, offset)))
            offset += block.conv.out_channels
        return units


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """ASPP dilation rates: 6/12/18 at output stride 16, doubled at 8, halved at 32."""
    return (96 // output_stride, 192 // output_stride, 288 // output_stride)


class ASPPSegmentationModel(SegmentationModel):
    """A timm encoder, ASPP on its deepest features, and the decoder :meth:`build_decoder` makes.

    Modules are built in this order (encoder, ASPP, decoder), so seeded weights do not depend on
    the subclass. ``aspp=False`` (only where :attr:`aspp_optional`) feeds the decoder the raw
    deepest features.
    """

    #: Whether ``aspp=False`` is allowed (DAN's option; DeepLab v3+ always has its ASPP).
    aspp_optional: ClassVar[bool] = False

    def __init__(
        self,
        backbone: str = "resnet101",
        num_classes: int = 21,
        lrg: int | None = None,
        pretrained: bool | str | Path = False,
        output_stride: int = 16,
        aspp: bool = True,
    ) -> None:
        if not aspp and not self.aspp_optional:
            raise InputError(f"model {self.name!r} needs its ASPP; aspp=False is not an option")
        super().__init__(TimmEncoder(backbone, output_stride, pretrained), num_classes, lrg)
        enc = self.encoder
        self.aspp: ASPP | None = (
            ASPP(enc.deep_channels, aspp_rates(output_stride)) if aspp else None
        )
        self.decoder = self.build_decoder(ASPP_CHANNELS if aspp else enc.deep_channels, num_classes)

    def build_decoder(self, deep_channels: int, num_classes: int) -> nn.Module:
        """The decoder over ``deep_channels``-wide deepest features (ASPP's, or the encoder's)."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Features:
        low, mid, deep = self.encoder(x)
        return low, mid, deep if self.aspp is None else self.aspp(deep)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder] if self.aspp is None else [self.encoder, self.aspp]

    def decoder_modules(self) -> list[nn.Module]:
        return [self.decoder]

    def head_units(self) -> list[PrunableUnit]:
        aspp = [] if self.aspp is None else self.aspp.units("aspp.")
        return [*aspp, *self.decoder.units("decoder.")]  # type: ignore[operator]


__all__ = ["ASPP", "ASPP_CHANNELS", "ASPPPooling", "ASPPSegmentationModel", "aspp_rates"]
