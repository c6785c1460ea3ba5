"""DAN, Deep Aggregation Net (Kuo et al. 2018): encoder + ASPP, an aggregation decoder.

The paper we reproduce gives DAN the same encoder as DeepLab v3+ (95.6 GFLOPs, 60.1 M parameters
in both, section A.1), so the encoder includes the same ASPP (``aspp=False`` drops it). The decoder
fuses encoder stages progressively from deep to shallow and predicts on the stride-4 grid:

    deep (ASPP, stride 16) -> 1x1 256->64 ............................. at the stride-16 grid
    mid (stride 8)         -> 1x1 ->48; concat with up(deep) -> 3x3 112->64 at the stride-8 grid
    low (stride 4)         -> 1x1 ->64; concat with up(mid)  -> 3x3 128->128 -> 3x3 128->128
                              -> 1x1 classifier ............................. at the stride-4 grid

(every conv with BN + ReLU except the classifier), logits up-sampled bilinearly to the input. At
ResNet-101, 513 x 513 and 21 classes that is ~0.42 M decoder parameters and ~11.3 GFLOPs, the
paper's "about 0.4 M and 11.1 GFLOPs". The widths are constructor arguments.

Feature truncation at ``lrg = s``: the stride-4 stage runs at s x s, and every coarser stage
whose native grid is finer than s (e.g. the 65 x 65 stride-8 stage when s = 33) is resized to
s x s too; stages already coarser than s keep their native grid. Each stage's encoder feature is
resized (bilinear, ``align_corners=False``) before its 1x1 conv.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from trainables.models.aspp import ASPPSegmentationModel
from trainables.models.common import ConvBNAct, Features, resize, unit
from trainables.models.units import PrunableUnit


def _stage_grid(feature: Tensor, grid: tuple[int, int]) -> tuple[int, int]:
    """The grid a stage runs at: its native grid, capped at the decoder grid."""
    return (min(int(feature.shape[-2]), grid[0]), min(int(feature.shape[-1]), grid[1]))


class AggregationDecoder(nn.Module):
    """Deep-to-shallow aggregation of (deep, mid, low) features; logits at ``out_size``."""

    def __init__(
        self,
        deep_channels: int,
        mid_channels: int,
        low_channels: int,
        num_classes: int,
        deep_width: int = 64,
        mid_reduce: int = 48,
        mid_width: int = 64,
        low_reduce: int = 64,
        low_width: int = 128,
    ) -> None:
        super().__init__()
        self.deep_reduce = ConvBNAct(deep_channels, deep_width, 1)
        self.mid_reduce = ConvBNAct(mid_channels, mid_reduce, 1)
        self.mid_fuse = ConvBNAct(deep_width + mid_reduce, mid_width, 3)
        self.low_reduce = ConvBNAct(low_channels, low_reduce, 1)
        self.low_fuse1 = ConvBNAct(mid_width + low_reduce, low_width, 3)
        self.low_fuse2 = ConvBNAct(low_width, low_width, 3)
        self.classifier = nn.Conv2d(low_width, num_classes, 1)

    def forward(
        self,
        low: Tensor,
        mid: Tensor,
        deep: Tensor,
        grid: tuple[int, int],
        out_size: tuple[int, int],
    ) -> Tensor:
        deep_grid, mid_grid = _stage_grid(deep, grid), _stage_grid(mid, grid)
        x = self.deep_reduce(resize(deep, deep_grid))
        m = self.mid_reduce(resize(mid, mid_grid))
        x = self.mid_fuse(torch.cat([resize(x, mid_grid), m], dim=1))
        lo = self.low_reduce(resize(low, grid))
        x = self.low_fuse1(torch.cat([resize(x, grid), lo], dim=1))
        x = self.classifier(self.low_fuse2(x))
        return resize(x, out_size)

    def units(self, prefix: str) -> list[PrunableUnit]:
        """Every decoder conv but the classifier, with its consumer and concat offset.

        Offsets follow the current widths, so they stay right on a compacted copy.
        """
        return [
            unit(f"{prefix}deep_reduce", self.deep_reduce, "decoder", (self.mid_fuse.conv, 0)),
            unit(
                f"{prefix}mid_reduce",
                self.mid_reduce,
                "decoder",
                (self.mid_fuse.conv, self.deep_reduce.conv.out_channels),
            ),
            unit(f"{prefix}mid_fuse", self.mid_fuse, "decoder", (self.low_fuse1.conv, 0)),
            unit(
                f"{prefix}low_reduce",
                self.low_reduce,
                "decoder",
                (self.low_fuse1.conv, self.mid_fuse.conv.out_channels),
            ),
            unit(f"{prefix}low_fuse1", self.low_fuse1, "decoder", (self.low_fuse2.conv, 0)),
            unit(f"{prefix}low_fuse2", self.low_fuse2, "decoder", (self.classifier, 0)),
        ]


class DAN(ASPPSegmentationModel):
    """Deep Aggregation Net with any timm encoder; ``lrg`` truncates the decoder grids."""

    name = "dan"
    aspp_optional: ClassVar[bool] = True
    decoder: AggregationDecoder

    def build_decoder(self, deep_channels: int, num_classes: int) -> AggregationDecoder:
        enc = self.encoder
        return AggregationDecoder(deep_channels, enc.mid_channels, enc.low_channels, num_classes)

    def decode(self, features: Features, out_size: tuple[int, int]) -> Tensor:
        low, mid, deep = features
        return self.decoder(low, mid, deep, self.decoder_grid(low), out_size)

    def architecture(self) -> dict[str, Any]:
        return {**super().architecture(), "aspp": self.aspp is not None}
