"""Physical compaction of a soft-pruned network: its FLOPs are what the pruned model really costs.

A filter with a zero kernel (SFP, :mod:`trainables.pruning`) still emits a constant per channel
in eval mode: ``c = act(BN(conv bias or 0))``, its BN shift through the activation. Removing the
channel (its kernel row, its BN entry and the consumers' matching input channels) would lose that
constant, so :func:`compact` folds it into each consumer conv ``W``:

- a consumer without padding sees ``c`` everywhere, so its response ``sum_j c_j W[:, j]`` is a
  constant per output channel, added to the conv bias (created when the conv had none);
- a zero-padded consumer (a 3x3 conv) sees ``c`` inside the image and 0 in the padding, so the
  response is constant inside and smaller along the border; the conv becomes a
  :class:`FoldedConv2d` that adds ``conv2d(ones, K)`` with ``K = sum_j c_j W[:, j]``, a
  one-input-channel conv (its FLOPs are counted: ``1 / in_channels`` of the conv).

The compact network's eval output therefore equals the masked network's. Every consumer that
loses inputs takes its fold, even when the constants happen to be 0, so the compact structure (and
its FLOPs) depends only on how many filters each unit lost, not on the trained weights. Every
unit keeps at least one channel. All removals are planned from the unpruned shapes first, so a consumer fed by
several units at different offsets (a concat) loses the right input channels.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.models.units import Consumer, PrunableUnit
from trainables.pruning import (
    SoftFilterPruner,
    check_unit,
    filter_norms,
    units_of,
    zeroed_mask,
)

#: Any module type: compact copies keep their class.
M = TypeVar("M", bound=nn.Module)


class FoldedConv2d(nn.Conv2d):
    """A conv plus the exact response to constant input channels that were removed.

    ``fold_weight`` (out, 1, kh, kw) is ``sum_j c_j W[:, j]`` over the removed channels ``j``
    with constants ``c_j``; the forward adds ``conv2d(ones(1, 1, H, W), fold_weight)`` with the
    conv's stride, padding and dilation, which is what those channels contributed, border included.
    """

    fold_weight: Tensor

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> FoldedConv2d:
        """A FoldedConv2d sharing ``conv``'s parameters, with a zero fold.

        Built on the ``meta`` device (no initialisation runs, so the global RNG is untouched),
        then given ``conv``'s own tensors. Only a plain ``nn.Conv2d`` qualifies: a subclass
        (timm's ``Conv2dSame``, ``StdConv2d``) has a forward of its own that would be lost.
        """
        if type(conv) is not nn.Conv2d:
            raise ValueError(f"cannot fold constants into a {type(conv).__name__}: not nn.Conv2d")
        if conv.padding_mode != "zeros" or conv.groups != 1:
            raise ValueError("only ungrouped, zero-padded convs can take folded constants")
        weight = conv.weight
        folded = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
            device="meta",
        )
        folded.weight = conv.weight
        folded.bias = conv.bias
        kh, kw = folded.kernel_size
        folded.fold_weight = weight.new_zeros(conv.out_channels, 1, kh, kw).detach()
        folded.train(conv.training)
        return folded

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        weight = self.weight
        self.register_buffer(
            "fold_weight",
            torch.zeros(self.out_channels, 1, kh, kw, device=weight.device, dtype=weight.dtype),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        ones = x.new_ones((1, 1, x.shape[-2], x.shape[-1]))
        return out + F.conv2d(
            ones, self.fold_weight, None, self.stride, self.padding, self.dilation
        )


@torch.no_grad()
def channel_constants(unit: PrunableUnit) -> Tensor:
    """Per output channel, what it emits in eval mode when its kernel is zero: ``act(BN(b))``."""
    conv, bn = unit.conv, unit.bn
    bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
    x = bias.detach().reshape(1, -1, 1, 1).clone()
    if bn.running_mean is not None and bn.running_var is not None:
        y = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    else:  # batch statistics of a constant: the normalised value is 0, the BN emits its bias
        y = bn.bias.detach().reshape(1, -1, 1, 1).clone()
    return unit.act(y).flatten()


def _copy_with_units(
    model: M, units: Sequence[PrunableUnit] | None
) -> tuple[M, list[PrunableUnit]]:
    """A deep copy of ``model`` and its units re-pointed at the copy's modules."""
    originals = units_of(model, units)
    memo: dict[int, Any] = {}
    clone = copy.deepcopy(model, memo)

    def mapped(module: nn.Module, unit: PrunableUnit) -> Any:
        if id(module) not in memo:
            raise ValueError(f"unit {unit.name} refers to a module outside the model")
        return memo[id(module)]

    return clone, [
        PrunableUnit(
            name=u.name,
            conv=mapped(u.conv, u),
            bn=mapped(u.bn, u),
            consumers=tuple(Consumer(mapped(c.conv, u), c.offset) for c in u.consumers),
            kind=u.kind,
            act=memo.get(id(u.act), u.act),
            extra=dict(u.extra),
        )
        for u in originals
    ]


def _kept_outputs(unit: PrunableUnit) -> Tensor:
    """Output channels that survive: the non-zero ones, at least the largest-norm one.

    A channel of a :class:`FoldedConv2d` with a non-zero fold is not constant: it stays.
    """
    zero = zeroed_mask(unit)
    conv = unit.conv
    if isinstance(conv, FoldedConv2d):
        zero &= (conv.fold_weight.flatten(1) == 0).all(dim=1).cpu()
    if bool(zero.all()):
        return filter_norms(unit).argmax().reshape(1).cpu()
    return torch.nonzero(~zero).flatten()


@dataclass
class _ConvPlan:
    """Which output and input channels of one conv survive (None: all), and the fold it takes."""

    out_keep: Tensor | None = None
    in_removed: set[int] = field(default_factory=set)
    in_ranges: list[tuple[int, int, str]] = field(default_factory=list)
    fold: Tensor | None = None  # (out, kh, kw): sum_j c_j W[:, j] over removed inputs j


def _check_plan(conv: nn.Conv2d, plan: _ConvPlan) -> None:
    """Consumer offsets must fit the conv's inputs and not overlap (stale offsets would corrupt)."""
    spans = sorted(plan.in_ranges)
    for i, (start, stop, name) in enumerate(spans):
        overlaps = i + 1 < len(spans) and spans[i + 1][0] < stop
        if stop > conv.in_channels or overlaps:
            raise ValueError(
                f"unit {name}: channels [{start}, {stop}) do not fit consumer inputs "
                f"({conv.in_channels}) without overlap; are the consumer offsets stale?"
            )


@torch.no_grad()
def _add_fold(plan: _ConvPlan, consumer: Consumer, removed: list[int], constants: Tensor) -> None:
    """Accumulate the removed channels' constant response into the consumer's plan."""
    if not removed:
        return
    index = torch.tensor(removed, device=constants.device)
    c = constants[index].to(consumer.conv.weight.dtype)
    columns = consumer.conv.weight[:, consumer.offset + index.to(consumer.conv.weight.device)]
    fold = torch.einsum("oihw,i->ohw", columns, c.to(columns.device))
    plan.fold = fold if plan.fold is None else plan.fold + fold


def _plan(units: Iterable[PrunableUnit]) -> dict[nn.Conv2d, _ConvPlan]:
    """Per conv: kept output channels (as a producer), removed inputs and folds (as a consumer)."""
    plans: dict[nn.Conv2d, _ConvPlan] = {}
    for unit in units:
        check_unit(unit)
        plan = plans.setdefault(unit.conv, _ConvPlan())
        if plan.out_keep is not None:
            raise ValueError(f"unit {unit.name}: its conv is the producer of another unit too")
        if unit.conv.groups != 1:
            raise ValueError(f"unit {unit.name}: grouped convs cannot be compacted")
        keep = _kept_outputs(unit)
        plan.out_keep = keep
        removed = sorted(set(range(unit.conv.out_channels)) - set(keep.tolist()))
        constants = channel_constants(unit)
        for consumer in unit.consumers:
            if consumer.conv.groups != 1:
                raise ValueError(f"unit {unit.name}: grouped consumer convs cannot be compacted")
            cplan = plans.setdefault(consumer.conv, _ConvPlan())
            stop = consumer.offset + unit.conv.out_channels
            cplan.in_ranges.append((consumer.offset, stop, unit.name))
            cplan.in_removed.update(consumer.offset + i for i in removed)
            _add_fold(cplan, consumer, removed, constants)
    for conv, plan in plans.items():
        _check_plan(conv, plan)
    return plans


def _param(tensor: Tensor, like: Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.contiguous(), requires_grad=like.requires_grad)


@torch.no_grad()
def _slice_conv(conv: nn.Conv2d, plan: _ConvPlan) -> None:
    weight = conv.weight
    if plan.in_removed:
        keep_in = [i for i in range(conv.in_channels) if i not in plan.in_removed]
        weight = weight[:, torch.tensor(keep_in, device=weight.device)]
        conv.in_channels = len(keep_in)
    if plan.out_keep is not None:
        keep_out = plan.out_keep.to(weight.device)
        weight = weight[keep_out]
        if conv.bias is not None:
            conv.bias = _param(conv.bias[keep_out], conv.bias)
        if isinstance(conv, FoldedConv2d):
            conv.fold_weight = conv.fold_weight[keep_out].clone()
        conv.out_channels = len(keep_out)
    conv.weight = _param(weight, conv.weight)


@torch.no_grad()
def _slice_bn(bn: nn.BatchNorm2d, keep: Tensor) -> None:
    keep = keep.to(bn.weight.device)
    bn.weight = _param(bn.weight[keep], bn.weight)
    bn.bias = _param(bn.bias[keep], bn.bias)
    if bn.running_mean is not None and bn.running_var is not None:
        bn.running_mean = bn.running_mean[keep].clone()
        bn.running_var = bn.running_var[keep].clone()
    bn.num_features = len(keep)


def _unpadded(conv: nn.Conv2d) -> bool:
    padding = conv.padding
    if isinstance(padding, str):
        return padding == "valid"
    return all(int(p) == 0 for p in padding)


@torch.no_grad()
def _apply_fold(root: nn.Module, conv: nn.Conv2d, fold: Tensor) -> nn.Conv2d:
    """Add the folded constant response to ``conv``: into its bias, or as a border-exact map.

    Returns the conv that now stands in the model (a new :class:`FoldedConv2d` when swapped in).
    """
    if _unpadded(conv) and not isinstance(conv, FoldedConv2d):
        shift = fold.sum(dim=(1, 2))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(shift)
        conv.bias = nn.Parameter(bias + shift, requires_grad=conv.weight.requires_grad)
        return conv
    target = conv if isinstance(conv, FoldedConv2d) else _swap_in_folded(root, conv)
    target.fold_weight += fold.unsqueeze(1).to(target.fold_weight.dtype)
    return target


def _swap_in_folded(root: nn.Module, conv: nn.Conv2d) -> FoldedConv2d:
    """Replace ``conv`` wherever ``root`` holds it by a :class:`FoldedConv2d` of its parameters."""
    folded = FoldedConv2d.from_conv(conv)
    found = False
    for module in root.modules():
        for name, child in list(module.named_children()):
            if child is conv:
                setattr(module, name, folded)
                found = True
    if not found:
        raise ValueError("a consumer conv is not part of the model being compacted")
    return folded


def compact_in_place(root: nn.Module, units: Sequence[PrunableUnit]) -> None:
    """Remove zero-kernel channels of ``units`` (modules of ``root``) and fold their constants.

    Folds are applied before slicing (they are per output channel of the unsliced consumer).
    ``units`` are stale afterwards (folded consumers are new modules): list them again.
    """
    plans = _plan(units)
    for unit in units:
        keep = plans[unit.conv].out_keep
        if keep is not None:
            _slice_bn(unit.bn, keep)
    for conv, plan in plans.items():
        standing = conv if plan.fold is None else _apply_fold(root, conv, plan.fold)
        _slice_conv(standing, plan)


def compact(model: M, units: Sequence[PrunableUnit] | None = None) -> M:
    """A deep copy of ``model`` with its zero-kernel channels removed physically.

    The removed channels' constants are folded into their consumers (module docstring), so the
    compact network's eval output equals the masked one's. ``model`` is left untouched.
    """
    clone, mapped = _copy_with_units(model, units)
    compact_in_place(clone, mapped)
    return clone


def prune_for_counting(
    model: M,
    encoder_rate: float,
    decoder_rate: float,
    units: Sequence[PrunableUnit] | None = None,
) -> M:
    """A compact copy pruned by rate (smallest norms of the current weights), for FLOPs counting.

    The compact structure depends only on ``floor(rate * n_out)`` per unit (every consumer that
    loses inputs takes a fold, whatever the constants), so an untrained model counts what the
    trained pruned model costs. ``model`` is left untouched.
    """
    clone, mapped = _copy_with_units(model, units)
    SoftFilterPruner(clone, encoder_rate, decoder_rate, units=mapped).step()
    compact_in_place(clone, mapped)
    return clone


__all__ = [
    "FoldedConv2d",
    "channel_constants",
    "compact",
    "compact_in_place",
    "prune_for_counting",
]
