"""DeepLab v3+ (Chen et al. 2018): timm encoder + ASPP, and the stride-4 decoder.

ASPP: a 1x1 branch, three 3x3 branches dilated 6/12/18 (at output stride 16; scaled by
16 / output stride) and an image-pooling branch, 256 channels each with BN + ReLU, projected
1280 -> 256 (1x1) + dropout 0.1.
Decoder: 1x1 conv of the stride-4 features to 48 channels, concat with the up-sampled ASPP output
(304 channels), two 3x3 convs of 256 (BN + ReLU), a 1x1 classifier; logits up-sampled bilinearly
to the input. With ``lrg = s`` the decoder's inputs (stride-4 features and ASPP output) are
resized bilinearly to s x s and the decoder convs run at s x s.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trainables.models.common import ConvBNAct, Features, SegmentationModel, resize, unit
from trainables.models.encoder import TimmEncoder
from trainables.models.units import PrunableUnit

ASPP_CHANNELS = 256
LOW_CHANNELS = 48
DECODER_CHANNELS = 256


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


class DeepLabDecoder(nn.Module):
    """Stride-4 decoder; runs at ``grid`` (native or s x s) and returns logits at ``out_size``."""

    def __init__(self, low_channels: int, aspp_channels: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = ConvBNAct(low_channels, LOW_CHANNELS, 1)
        self.fuse1 = ConvBNAct(aspp_channels + LOW_CHANNELS, DECODER_CHANNELS, 3)
        self.fuse2 = ConvBNAct(DECODER_CHANNELS, DECODER_CHANNELS, 3)
        self.classifier = nn.Conv2d(DECODER_CHANNELS, num_classes, 1)

    def forward(
        self, low: Tensor, aspp: Tensor, grid: tuple[int, int], out_size: tuple[int, int]
    ) -> Tensor:
        low = self.reduce(resize(low, grid))
        x = torch.cat([resize(aspp, grid), low], dim=1)
        x = self.classifier(self.fuse2(self.fuse1(x)))
        return resize(x, out_size)

    def units(self, prefix: str) -> list[PrunableUnit]:
        """The 48-channel reduce (at offset 256 in the concat) and the two 3x3 convs."""
        aspp_channels = self.fuse1.conv.in_channels - self.reduce.conv.out_channels
        return [
            unit(f"{prefix}reduce", self.reduce, "decoder", (self.fuse1.conv, aspp_channels)),
            unit(f"{prefix}fuse1", self.fuse1, "decoder", (self.fuse2.conv, 0)),
            unit(f"{prefix}fuse2", self.fuse2, "decoder", (self.classifier, 0)),
        ]


class DeepLabV3Plus(SegmentationModel):
    """DeepLab v3+ with any timm encoder; ``lrg`` truncates the decoder grid."""

    name = "deeplabv3plus"

    def __init__(
        self,
        backbone: str = "resnet101",
        num_classes: int = 21,
        lrg: int | None = None,
        pretrained: bool | str | Path = False,
        output_stride: int = 16,
    ) -> None:
        super().__init__(TimmEncoder(backbone, output_stride, pretrained), num_classes, lrg)
        self.aspp = ASPP(self.encoder.deep_channels, aspp_rates(output_stride))
        self.decoder = DeepLabDecoder(self.encoder.low_channels, ASPP_CHANNELS, num_classes)

    def encode(self, x: Tensor) -> Features:
        low, mid, deep = self.encoder(x)
        return low, mid, self.aspp(deep)

    def decode(self, features: Features, out_size: tuple[int, int]) -> Tensor:
        low, _mid, aspp = features
        return self.decoder(low, aspp, self.decoder_grid(low), out_size)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder, self.aspp]

    def decoder_modules(self) -> list[nn.Module]:
        return [self.decoder]

    def head_units(self) -> list[PrunableUnit]:
        return [*self.aspp.units("aspp."), *self.decoder.units("decoder.")]
