"""Soft filter pruning (SFP, He et al. 2019): zero the smallest filters' kernels after each epoch.

After every epoch :class:`SoftFilterPruner` zeroes, in every prunable unit (a conv + its BatchNorm,
see :mod:`trainables.models.units`), the ``floor(rate * n_out)`` output filters with the smallest
L2 kernel norm: the kernel rows only. The BN keeps its weight and bias, so the filter keeps
receiving gradient and can grow back before the next epoch re-selects; that is what makes the
pruning soft (zeroing the BN too would freeze the filter at zero: hard pruning). A channel whose
kernel is zero emits a constant (its BN shift through the activation);
:func:`trainables.compaction.compact` removes such channels physically and folds that constant
into the consumers, so the smaller network computes the same eval output and its FLOPs are what
the pruned model really costs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from trainables.errors import InputError
from trainables.models.units import PrunableUnit

#: Largest prune rate accepted: at least 10 % of every unit's filters survive.
MAX_RATE = 0.9
#: Unit kinds and the rate that applies to each.
KINDS = ("encoder", "decoder")
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
    """A unit must be a conv + affine BN of matching width (its constant is then well defined)."""
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
    """Zero the kernel rows of output channels ``index`` (the conv bias and BN stay: soft)."""
    weight = unit.conv.weight
    weight.index_fill_(0, index.to(weight.device), 0.0)


@torch.no_grad()
def zeroed_mask(unit: PrunableUnit) -> Tensor:
    """Boolean (n_out,): channels whose kernel is exactly zero (pruned and not grown back)."""
    return (unit.conv.weight.flatten(1).abs().amax(dim=1) == 0).cpu()


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
    """Fraction of filters whose kernel is now exactly zero, per kind and in total (0.0 where a
    kind has none); a filter that grew back since the last step no longer counts."""
    zero = dict.fromkeys(KINDS, 0)
    total = dict.fromkeys(KINDS, 0)
    for unit in units_of(model, units):
        zero[unit.kind] += int(zeroed_mask(unit).sum())
        total[unit.kind] += unit.conv.out_channels
    out = {kind: zero[kind] / total[kind] if total[kind] else 0.0 for kind in KINDS}
    out["total"] = sum(zero.values()) / max(1, sum(total.values()))
    return out


__all__ = [
    "KINDS",
    "MAX_RATE",
    "SoftFilterPruner",
    "check_unit",
    "filter_norms",
    "prune_count",
    "pruned_fraction",
    "smallest_filters",
    "validate_rate",
    "zero_filters",
    "zeroed_mask",
]
