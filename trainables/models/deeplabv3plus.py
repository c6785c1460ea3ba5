"""DeepLab v3+ (Chen et al. 2018): timm encoder + ASPP (:mod:`trainables.models.aspp`), and the
stride-4 decoder.

Decoder: 1x1 conv of the stride-4 features to 48 channels, concat with the up-sampled ASPP output
(304 channels), two 3x3 convs of 256 (BN + ReLU), a 1x1 classifier; logits up-sampled bilinearly
to the input. With ``lrg = s`` the decoder's inputs (stride-4 features and ASPP output) are
resized bilinearly to s x s and the decoder convs run at s x s.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainables.models.aspp import (
    ASPP,
    ASPP_CHANNELS,
    ASPPPooling,
    ASPPSegmentationModel,
    aspp_rates,
)
from trainables.models.common import ConvBNAct, Features, resize, unit
from trainables.models.units import PrunableUnit

LOW_CHANNELS = 48
DECODER_CHANNELS = 256


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


class DeepLabV3Plus(ASPPSegmentationModel):
    """DeepLab v3+ with any timm encoder; ``lrg`` truncates the decoder grid."""

    name = "deeplabv3plus"
    decoder: DeepLabDecoder

    def build_decoder(self, deep_channels: int, num_classes: int) -> DeepLabDecoder:
        return DeepLabDecoder(self.encoder.low_channels, deep_channels, num_classes)

    def decode(self, features: Features, out_size: tuple[int, int]) -> Tensor:
        low, _mid, aspp = features
        return self.decoder(low, aspp, self.decoder_grid(low), out_size)


__all__ = [
    "ASPP",
    "ASPP_CHANNELS",
    "ASPPPooling",
    "DeepLabDecoder",
    "DeepLabV3Plus",
    "aspp_rates",
]
