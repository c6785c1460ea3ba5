"""FLOPs conventions: how a trial's architecture is counted, one registry (no torch here).

Two conventions (:data:`FLOPS_CONVENTIONS`) say how an architecture of a trial is counted:

- ``compact`` (the default): the network the trial trains, at its output stride (16) and, when
  pruned, physically compacted. This is what the trained model costs.
- ``paper``: the paper's Table 2. Its encoder figure (95.6 GFLOPs at 513) is the ResNet-101 count
  at output stride 32, and its pruned rows follow SFP in He et al.'s ResNet setting, which prunes
  every conv inside a residual block at the encoder rate, the block's last conv (the one writing
  the residual stream) included: that conv's zeroed filters are skipped (their channel adds a
  constant to the stream), so its count and its BN's drop by ``floor(p n) / n``. The stem and
  the shortcut convs stay whole. One more reading of the table: DAN at its native grid (the 129
  column) is counted with its decoder unpruned (107 -> 78 -> 55 -> 37 is the encoder saving
  alone, while every truncated column also loses the decoder's 20 %), so the convention does the
  same. Training is unchanged (DESIGN.md: the residual stream is never pruned); only the count
  differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from trainables.config import FlopsConvention
from trainables.errors import InputError

if TYPE_CHECKING:
    from torch import nn

#: FLOPs conventions by name (module docstring): how an architecture's cost is counted.
FLOPS_CONVENTIONS: dict[FlopsConvention, str] = {
    "compact": "the trained network (output stride 16), pruned filters physically removed",
    "paper": "the paper's Table 2: output stride 32, SFP counted in He et al.'s ResNet setting",
}
assert set(FLOPS_CONVENTIONS) == set(get_args(FlopsConvention))
#: The output stride each convention counts at (None: the caller's, default 16).
_CONVENTION_STRIDE: dict[FlopsConvention, int | None] = {"compact": None, "paper": 32}


def check_convention(name: Any) -> FlopsConvention:
    """``name`` if it is a FLOPs convention, else an :class:`InputError` listing them."""
    for convention in FLOPS_CONVENTIONS:
        if name == convention:
            return convention
    raise InputError(
        f"unknown FLOPs convention {name!r}; choose from {', '.join(FLOPS_CONVENTIONS)}"
    )


def convention_stride(convention: FlopsConvention, output_stride: int | None) -> int:
    """The output stride a convention counts at; a conflicting explicit stride is an error."""
    fixed = _CONVENTION_STRIDE[convention]
    if fixed is not None and output_stride not in (None, fixed):
        raise InputError(
            f"output stride {output_stride} conflicts with FLOPs convention {convention!r}, "
            f"which counts at output stride {fixed}"
        )
    return fixed or (16 if output_stride is None else output_stride)


def paper_decoder_rate(model: str, lrg: int | None, native: int, rate: float) -> float:
    """The decoder rate Table 2 counts: DAN at its native grid unpruned, else ``rate``."""
    return 0.0 if model == "dan" and lrg in (None, native) else rate


def paper_skips(model: nn.Module, prune_rate: float) -> dict[nn.Module, float]:
    """The paper's convention: each residual block's last conv and BN lose ``floor(p n) / n``."""
    from trainables.pruning import prune_count

    encoder = getattr(model, "encoder", None)
    if prune_rate <= 0 or encoder is None or not hasattr(encoder, "block_outputs"):
        return {}
    skipped: dict[nn.Module, float] = {}
    for conv, bn in encoder.block_outputs():
        fraction = prune_count(prune_rate, conv.out_channels) / conv.out_channels
        skipped[conv] = skipped[bn] = fraction
    return skipped


__all__ = [
    "FLOPS_CONVENTIONS",
    "check_convention",
    "convention_stride",
    "paper_decoder_rate",
    "paper_skips",
]
