"""Soft filter pruning (SFP, He et al. 2019) and physical compaction of the pruned network.

After every epoch :class:`SoftFilterPruner` zeroes, in every prunable unit (a conv + its BatchNorm,
see :mod:`trainables.models.units`), the ``floor(rate * n_out)`` output filters with the smallest
L2 kernel norm: the kernel rows, the conv bias and the BN weight and bias. The channel is then
exactly 0 after BN + ReLU in train and eval mode, yet the filters stay trainable (SGD momentum
lets them grow back; the next step re-selects). :func:`compact` removes zeroed channels from a
copy, with the consumers' matching input channels, so the smaller network computes the same
output: its FLOPs are what the pruned model really costs.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from trainables.errors import InputError
from trainables.models.units import Consumer, PrunableUnit

#: Largest prune rate accepted: at least 10 % of every unit's filters survive.
MAX_RATE = 0.9
#: Unit kinds and the rate that applies to each.
KINDS = ("encoder", "decoder")
#: Any module type: compact copies keep their class.
M = TypeVar("M", bound=nn.Module)
# floor(rate * n) guards against 0.29 * 100 == 28.999999999999996.
_FLOOR_EPS = 1e-9


def validate_rate(name: str, value: Any) -> float:
    """``value`` as a float in [0, 0.9], else :class:`InputError` naming the field ``name``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) <= MAX_RATE:  # NaN fails the comparison
        raise InputError(
            f"{name} {value!r} is outside [0, {MAX_RATE}]; expected the fraction of filters "
            "soft filter pruning zeroes per conv"
        )
    return float(value)


def prune_count(rate: float, n_out: int) -> int:
    """How many of ``n_out`` filters a unit loses at ``rate``: ``floor(rate * n_out)``."""
    return math.floor(rate * n_out + _FLOOR_EPS)


def units_of(model: nn.Module, units: Sequence[PrunableUnit] | None = None) -> list[PrunableUnit]:
    """``units`` when given, else ``model.prunable_units()`` (an error if the model has none)."""
    if units is not None:
        return list(units)
    lister = getattr(model, "prunable_units", None)
    if lister is None:
        raise ValueError(f"{type(model).__name__} has no prunable_units(); pass units= explicitly")
    return list(lister())


def check_unit(unit: PrunableUnit) -> None:
    """A unit must be a conv + affine BN of matching width (else zeroing is not exact)."""
    conv, bn = unit.conv, unit.bn
    if unit.kind not in KINDS:
        raise ValueError(f"unit {unit.name}: kind {unit.kind!r} is not one of {KINDS}")
    if bn.weight is None or bn.bias is None:
        raise ValueError(f"unit {unit.name}: BatchNorm without affine parameters cannot be pruned")
    if conv.out_channels != bn.num_features:
        raise ValueError(
            f"unit {unit.name}: conv has {conv.out_channels} filters, BN {bn.num_features}"
        )


def filter_norms(unit: PrunableUnit) -> Tensor:
    """L2 norm of each output filter's kernel, shape (n_out,)."""
    return unit.conv.weight.detach().flatten(1).norm(dim=1)


def smallest_filters(unit: PrunableUnit, count: int) -> Tensor:
    """Indices of the ``count`` smallest-norm filters; ties go to the lower index."""
    order = torch.sort(filter_norms(unit), stable=True).indices
    return order[:count]


@torch.no_grad()
def zero_filters(unit: PrunableUnit, index: Tensor) -> None:
    """Zero the kernel rows, conv bias and BN weight/bias of output channels ``index``."""
    for param in (unit.conv.weight, unit.conv.bias, unit.bn.weight, unit.bn.bias):
        if param is not None:
            param.index_fill_(0, index.to(param.device), 0.0)


@torch.no_grad()
def zeroed_mask(unit: PrunableUnit) -> Tensor:
    """Boolean (n_out,): channels that are exactly 0 after BN (kernel, bias, BN affine all 0)."""
    conv, bn = unit.conv, unit.bn
    mask = conv.weight.flatten(1).abs().amax(dim=1) == 0
    for param in (conv.bias, bn.weight, bn.bias):
        if param is not None:
            mask &= param == 0
    return mask.cpu()


class SoftFilterPruner:
    """Zeroes the smallest filters of every unit at its kind's rate; call :meth:`step` per epoch.

    ``units`` defaults to ``model.prunable_units()``; pass them to prune any module. Rates are
    validated here (:func:`validate_rate`), units checked once (conv + affine BN of one width).
    """

    def __init__(
        self,
        model: nn.Module,
        encoder_rate: float,
        decoder_rate: float,
        units: Sequence[PrunableUnit] | None = None,
    ) -> None:
        self.model = model
        self.encoder_rate = validate_rate("encoder_rate", encoder_rate)
        self.decoder_rate = validate_rate("decoder_rate", decoder_rate)
        self.units = units_of(model, units)
        for unit in self.units:
            check_unit(unit)
        if self.encoder_rate > 0 and units is None and _backbone_units(model) == []:
            warnings.warn(
                "the backbone has no residual-block convs soft filter pruning can prune (grouped "
                "or non-ResNet blocks); the encoder rate prunes the ASPP branches only",
                stacklevel=2,
            )

    def rate(self, unit: PrunableUnit) -> float:
        """The rate that applies to ``unit`` (by its kind)."""
        return self.encoder_rate if unit.kind == "encoder" else self.decoder_rate

    @torch.no_grad()
    def step(self) -> dict[str, int]:
        """Zero ``floor(rate * n_out)`` smallest-norm filters per unit; counts per kind and total."""
        counts = dict.fromkeys(KINDS, 0)
        for unit in self.units:
            count = prune_count(self.rate(unit), unit.conv.out_channels)
            if count:
                zero_filters(unit, smallest_filters(unit, count))
            counts[unit.kind] += count
        return {**counts, "total": sum(counts.values())}


def _backbone_units(model: nn.Module) -> list[PrunableUnit] | None:
    """A segmentation model's residual-block units (None for other modules: not ours to judge)."""
    from trainables.models.common import SegmentationModel

    if not isinstance(model, SegmentationModel):
        return None
    return model.encoder.residual_units("encoder.backbone.")


def pruned_fraction(
    model: nn.Module, units: Sequence[PrunableUnit] | None = None
) -> dict[str, float]:
    """Fraction of filters now exactly zero, per kind and in total (0.0 where a kind has none)."""
    zero = dict.fromkeys(KINDS, 0)
    total = dict.fromkeys(KINDS, 0)
    for unit in units_of(model, units):
        zero[unit.kind] += int(zeroed_mask(unit).sum())
        total[unit.kind] += unit.conv.out_channels
    out = {kind: zero[kind] / total[kind] if total[kind] else 0.0 for kind in KINDS}
    out["total"] = sum(zero.values()) / max(1, sum(total.values()))
    return out


# --- compaction -------------------------------------------------------------------------------


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
            extra=dict(u.extra),
        )
        for u in originals
    ]


def _kept_outputs(unit: PrunableUnit) -> Tensor:
    """Output channels that survive: the non-zero ones, at least the largest-norm one."""
    zero = zeroed_mask(unit)
    if bool(zero.all()):
        return filter_norms(unit).argmax().reshape(1).cpu()
    return torch.nonzero(~zero).flatten()


@dataclass
class _ConvPlan:
    """Which output and input channels of one conv survive (None: all)."""

    out_keep: Tensor | None = None
    in_removed: set[int] = field(default_factory=set)
    in_ranges: list[tuple[int, int, str]] = field(default_factory=list)


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


def _plan(units: Iterable[PrunableUnit]) -> dict[nn.Conv2d, _ConvPlan]:
    """Per conv: kept output channels (as a producer) and removed inputs (as a consumer)."""
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
        for consumer in unit.consumers:
            if consumer.conv.groups != 1:
                raise ValueError(f"unit {unit.name}: grouped consumer convs cannot be compacted")
            cplan = plans.setdefault(consumer.conv, _ConvPlan())
            stop = consumer.offset + unit.conv.out_channels
            cplan.in_ranges.append((consumer.offset, stop, unit.name))
            cplan.in_removed.update(consumer.offset + i for i in removed)
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


def compact_in_place(units: Sequence[PrunableUnit]) -> None:
    """Remove zeroed channels of ``units`` from their convs, BNs and consumers (mutates them).

    All removals are planned from the unpruned shapes first, so a consumer fed by several units
    at different offsets (a concat) loses the right input channels.
    """
    plans = _plan(units)
    for unit in units:
        keep = plans[unit.conv].out_keep
        if keep is not None:
            _slice_bn(unit.bn, keep)
    for conv, plan in plans.items():
        _slice_conv(conv, plan)


def compact(model: M, units: Sequence[PrunableUnit] | None = None) -> M:
    """A deep copy of ``model`` with its zeroed channels removed physically.

    A channel goes when its kernel, conv bias and BN weight and bias are all zero: it is 0 after
    BN + ReLU, so the compact network's output equals the masked one's. Every unit keeps at
    least one channel. ``model`` is left untouched.
    """
    clone, mapped = _copy_with_units(model, units)
    compact_in_place(mapped)
    return clone


def prune_for_counting(
    model: M,
    encoder_rate: float,
    decoder_rate: float,
    units: Sequence[PrunableUnit] | None = None,
) -> M:
    """A compact copy pruned by rate (smallest norms of the current weights), for FLOPs counting.

    The compact structure depends only on ``floor(rate * n_out)`` per unit, so an untrained
    model counts what the trained pruned model costs. ``model`` is left untouched.
    """
    clone, mapped = _copy_with_units(model, units)
    SoftFilterPruner(clone, encoder_rate, decoder_rate, units=mapped).step()
    compact_in_place(mapped)
    return clone


__all__ = [
    "KINDS",
    "MAX_RATE",
    "SoftFilterPruner",
    "compact",
    "compact_in_place",
    "filter_norms",
    "prune_count",
    "prune_for_counting",
    "pruned_fraction",
    "smallest_filters",
    "validate_rate",
    "zero_filters",
    "zeroed_mask",
]
