"""FLOPs and parameter counts with fvcore, split into encoder and decoder.

Conventions (DESIGN.md): fvcore counts one fused multiply-add as one; the project reports
``gmacs = fvcore count / 1e9`` and ``gflops = 2 * gmacs`` (the paper's 43.4 GFLOPs for the
DeepLab v3+ decoder at 513 x 513). Besides convolutions and linear layers, the count keeps
fvcore's default handles for the remaining ops, pinned here so an fvcore upgrade cannot move the
figures: BatchNorm in eval mode 2 per element, bilinear resizes (``F.interpolate``, the LRG
resizes and the final logits up-sampling) 4 per output element, nearest resizes 1 per output
element, adaptive average pooling 1 per input element. Element-wise ops (ReLU, add, concat) are
not counted. The model is counted in eval mode on one zero image of ``input_size`` x
``input_size``.

A model with zeroed (soft-pruned) filters is counted on its compact form
(:func:`trainables.compaction.compact`), the network the pruned model really is.

How a trial's architecture is counted (``compact`` or ``paper``) is a FLOPs convention:
:mod:`trainables.flops_conventions`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from trainables import flops_cache
from trainables.config import check_input_size
from trainables.flops_conventions import (
    paper_skips,
)

if TYPE_CHECKING:
    from trainables.models import SegmentationModel

#: fvcore handles pinned (see the module docstring); values are (input scale, output scale).
_ELEMENTWISE_HANDLES: dict[str, tuple[float, float]] = {
    "aten::upsample_bilinear2d": (0, 4),
    "aten::upsample_nearest2d": (0, 1),
    "aten::adaptive_avg_pool2d": (1, 0),
}


class SplitModel(Protocol):
    """What :func:`count_flops` needs: a module that lists its encoder and decoder modules."""

    def encoder_modules(self) -> list[nn.Module]: ...

    def decoder_modules(self) -> list[nn.Module]: ...


@dataclass(frozen=True)
class FlopsReport:
    """Cost of one forward pass of one image; ``gflops = 2 * gmacs``."""

    gmacs: float  # fvcore count / 1e9 (multiply-adds)
    gflops: float  # 2 * gmacs
    encoder_gmacs: float  # backbone (+ ASPP)
    decoder_gmacs: float  # decoder, including its resizes and the final up-sampling
    encoder_gflops: float
    decoder_gflops: float
    params: int  # all parameters of the (compacted) model
    encoder_params: int
    decoder_params: int

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict (JSON / MLflow friendly)."""
        return asdict(self)


def has_zeroed_filters(model: nn.Module) -> bool:
    """True when some prunable unit has an output filter whose kernel is all zero."""
    units = getattr(model, "prunable_units", None)
    if units is None:
        return False
    with torch.no_grad():
        for unit in units():
            weight = unit.conv.weight
            if bool((weight.flatten(1).abs().amax(dim=1) == 0).any()):
                return True
    return False


def _params(modules: list[nn.Module]) -> int:
    seen = {id(p): p.numel() for m in modules for p in m.parameters()}
    return sum(seen.values())


def _fvcore_analysis(model: nn.Module, inputs: Any) -> Any:
    """An fvcore FlopCountAnalysis with our handles and no warnings."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

    analysis = FlopCountAnalysis(model, inputs)
    for op, (in_scale, out_scale) in _ELEMENTWISE_HANDLES.items():
        analysis.set_op_handle(op, elementwise_flop_counter(in_scale, out_scale))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def measure(
    model: nn.Module, input_size: int, skipped: dict[nn.Module, float] | None = None
) -> FlopsReport:
    """Count ``model`` as it is (no compaction) on one ``input_size`` x ``input_size`` image.

    ``skipped`` maps encoder modules to the fraction of their count a convention leaves out
    (the paper's pruned residual-stream convs); parameters are always counted in full.
    """
    split: SplitModel = model  # type: ignore[assignment]
    encoder, decoder = split.encoder_modules(), split.decoder_modules()
    names = {id(m): name for name, m in model.named_modules()}
    param = next(model.parameters())
    image = torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        total, by_module = _quiet_fvcore(model, image)
    finally:
        model.train(was_training)
    enc = sum(int(by_module.get(names[id(m)], 0)) for m in encoder)
    dec = sum(int(by_module.get(names[id(m)], 0)) for m in decoder)
    dec += total - enc - dec  # ops in neither list (none in our models) count as decoder work
    saved = round(sum(by_module.get(names[id(m)], 0) * f for m, f in (skipped or {}).items()))
    enc, total = enc - saved, total - saved
    return FlopsReport(
        gmacs=total / 1e9,
        gflops=2 * total / 1e9,
        encoder_gmacs=enc / 1e9,
        decoder_gmacs=dec / 1e9,
        encoder_gflops=2 * enc / 1e9,
        decoder_gflops=2 * dec / 1e9,
        params=sum(p.numel() for p in model.parameters()),
        encoder_params=_params(encoder),
        decoder_params=_params(decoder),
    )


def count_flops(model: nn.Module, input_size: int) -> FlopsReport:
    """FLOPs and parameters of ``model`` at ``input_size``; a soft-pruned model is compacted."""
    check_input_size(input_size)
    if has_zeroed_filters(model):
        from trainables.compaction import compact

        model = compact(model)
    return measure(model, input_size)


def _check_rates(prune_rate: float, decoder_prune_rate: float) -> None:
    from trainables.pruning import validate_rate

    validate_rate("prune_rate", prune_rate)
    validate_rate("decoder_prune_rate", decoder_prune_rate)


def architecture_flops(
    model: str,
    backbone: str,
    input_size: int,
    num_classes: int,
    lrg: int | None = None,
    prune_rate: float = 0.0,
    decoder_prune_rate: float = 0.0,
    *,
    output_stride: int | None = None,
    convention: str = "compact",
) -> FlopsReport:
    """FLOPs of an architecture (random weights, pruned by rate when a rate > 0), cached per key.

    The pruned structure depends only on the filter counts, so an untrained model pruned with
    ``prune_for_counting`` costs what the trained pruned model costs. The global RNG is left as
    it was (the weights come from a forked generator). ``convention`` is a name of
    :data:`FLOPS_CONVENTIONS`: ``paper`` counts at output stride 32 (95.6 GFLOPs for ResNet-101
    + ASPP at 513; 142.5 at stride 16) with the paper's pruning count; ``compact`` at
    ``output_stride`` (default 16). Several LRGs of one architecture: :func:`grid_flops`.
    """
    reports = grid_flops(
        model,
        backbone,
        input_size,
        num_classes,
        (lrg,),
        prune_rate,
        decoder_prune_rate,
        output_stride=output_stride,
        convention=convention,
    )
    return reports[lrg]


def grid_flops(
    model: str,
    backbone: str,
    input_size: int,
    num_classes: int,
    lrgs: Sequence[int | None],
    prune_rate: float = 0.0,
    decoder_prune_rate: float = 0.0,
    *,
    output_stride: int | None = None,
    convention: str = "compact",
) -> dict[int | None, FlopsReport]:
    """:func:`architecture_flops` at each of ``lrgs``, building the network once.

    The encoder (+ ASPP) and the decoder are traced apart: the encoder's count does not depend
    on the LRG, so it is traced once and each LRG only re-traces the small decoder (the sum
    equals one trace of the whole network). The network lives for this call only; the reports
    are cached per key in this process and on disk (``trainables.flops_cache``, shared by every
    trial and command), so only grids never counted before build a network.
    """
    check_input_size(input_size)
    if prune_rate or decoder_prune_rate:
        _check_rates(prune_rate, decoder_prune_rate)
    keys = flops_cache.report_keys(
        model,
        backbone,
        input_size,
        num_classes,
        lrgs,
        prune_rate,
        decoder_prune_rate,
        output_stride=output_stride,
        convention=convention,
    )
    missing: dict[tuple[Any, ...], list[int | None]] = {}
    for lrg, key in keys.items():
        if key not in _REPORTS and (stored := flops_cache.load(key)) is not None:
            _REPORTS[key] = FlopsReport(**stored)
        if key not in _REPORTS:
            missing.setdefault(key[:6], []).append(lrg)
    for net_key, group in missing.items():
        net = _counting_net(*net_key)
        for lrg, report in _count_grids(net, input_size, group, prune_rate, convention).items():
            _REPORTS[keys[lrg]] = report
            flops_cache.store(keys[lrg], report.as_dict())
    return {lrg: _REPORTS[key] for lrg, key in keys.items()}


#: Reports counted (or read from the disk cache, ``trainables.flops_cache``) in this process,
#: by (network key, input size, convention, lrg).
_REPORTS: dict[tuple[Any, ...], FlopsReport] = {}


def _count_grids(
    net: SegmentationModel,
    input_size: int,
    lrgs: Sequence[int | None],
    prune_rate: float,
    convention: str,
) -> dict[int | None, FlopsReport]:
    """Reports of ``net`` at each LRG: the encoder traced once, the decoder once per LRG."""
    from trainables.models import validate_lrg

    native = net.native_grid(input_size)
    checked = [validate_lrg(lrg, native) for lrg in lrgs]
    enc, shapes = _encoder_count(net, input_size, prune_rate, convention)
    params = sum(p.numel() for p in net.parameters())
    encoder_params, decoder_params = _params(net.encoder_modules()), _params(net.decoder_modules())
    reports: dict[int | None, FlopsReport] = {}
    for lrg, valid in zip(lrgs, checked, strict=True):
        dec = _decoder_count(net, shapes, valid, input_size)
        reports[lrg] = FlopsReport(
            gmacs=(enc + dec) / 1e9,
            gflops=2 * (enc + dec) / 1e9,
            encoder_gmacs=enc / 1e9,
            decoder_gmacs=dec / 1e9,
            encoder_gflops=2 * enc / 1e9,
            decoder_gflops=2 * dec / 1e9,
            params=params,
            encoder_params=encoder_params,
            decoder_params=decoder_params,
        )
    return reports


def _counting_net(
    model: str,
    backbone: str,
    num_classes: int,
    output_stride: int,
    prune_rate: float,
    decoder_prune_rate: float,
) -> SegmentationModel:
    """The network counted for a key: seeded random weights, pruned and compacted by rate."""
    from trainables.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model(
            model,
            backbone=backbone,
            num_classes=num_classes,
            pretrained=False,
            output_stride=output_stride,
        )
        if prune_rate > 0 or decoder_prune_rate > 0:
            from trainables.compaction import prune_for_counting

            net = prune_for_counting(net, prune_rate, decoder_prune_rate)
    return net.eval()


class _Encode(nn.Module):
    """The encoder half of a segmentation model, as a module fvcore can trace."""

    def __init__(self, net: SegmentationModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        return self.net.encode(x)


class _Decode(nn.Module):
    """The decoder half, on given features, logits at ``out_size``."""

    def __init__(self, net: SegmentationModel, out_size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.out_size = out_size

    def forward(self, low: torch.Tensor, mid: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        return self.net.decode((low, mid, deep), self.out_size)


def _encoder_count(
    net: SegmentationModel, input_size: int, prune_rate: float, convention: str
) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """Multiply-adds of the encoder (+ ASPP) under ``convention``, and its feature shapes."""
    image = torch.zeros(1, 3, input_size, input_size)
    skipped = paper_skips(net, prune_rate) if convention == "paper" else {}
    with torch.no_grad():
        shapes = tuple(tuple(f.shape) for f in net.encode(image))
    return _traced_count(_Encode(net), (image,), skipped), shapes


def _decoder_count(
    net: SegmentationModel, shapes: tuple[tuple[int, ...], ...], lrg: int | None, input_size: int
) -> int:
    """Multiply-adds of the decoder at ``lrg`` on zero features of the encoder's shapes
    (``net`` is this count's own network: setting its grid touches nothing shared)."""
    features = tuple(torch.zeros(shape) for shape in shapes)
    net.lrg = lrg
    return _traced_count(_Decode(net, (input_size, input_size)), features, {})


def _quiet_fvcore(module: nn.Module, inputs: Any) -> tuple[int, dict[str, int]]:
    """fvcore's total and per-module counts of ``module`` on ``inputs`` (no grad), with fvcore's
    log lines and warnings muted."""
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = _fvcore_analysis(module, inputs)
            return int(analysis.total()), dict(analysis.by_module())
    finally:
        fvcore_logger.setLevel(level)


def _traced_count(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], skipped: dict[nn.Module, float]
) -> int:
    """fvcore's count of ``module`` on ``inputs`` (eval mode), less the ``skipped`` fractions."""
    names = {id(m): name for name, m in module.named_modules()}
    total, by_module = _quiet_fvcore(module.eval(), inputs)
    saved = sum(by_module.get(names[id(m)], 0) * f for m, f in skipped.items())
    return total - round(saved)
