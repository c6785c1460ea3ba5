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
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import nn

from trainables.errors import InputError

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


def _fvcore_analysis(model: nn.Module, image: torch.Tensor) -> Any:
    """An fvcore FlopCountAnalysis with our handles and no warnings."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

    analysis = FlopCountAnalysis(model, image)
    for op, (in_scale, out_scale) in _ELEMENTWISE_HANDLES.items():
        analysis.set_op_handle(op, elementwise_flop_counter(in_scale, out_scale))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def measure(model: nn.Module, input_size: int) -> FlopsReport:
    """Count ``model`` as it is (no compaction) on one ``input_size`` x ``input_size`` image."""
    split: SplitModel = model  # type: ignore[assignment]
    encoder, decoder = split.encoder_modules(), split.decoder_modules()
    names = {id(m): name for name, m in model.named_modules()}
    param = next(model.parameters())
    image = torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = _fvcore_analysis(model, image)
            total = int(analysis.total())
            by_module = analysis.by_module()
    finally:
        model.train(was_training)
        fvcore_logger.setLevel(level)
    enc = sum(int(by_module.get(names[id(m)], 0)) for m in encoder)
    dec = sum(int(by_module.get(names[id(m)], 0)) for m in decoder)
    dec += total - enc - dec  # ops in neither list (none in our models) count as decoder work
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


def check_input_size(input_size: int) -> None:
    """Input sizes must be integers >= 16 (smaller images have no stride-4 grid worth a decoder)."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
        raise InputError(f"input size {input_size!r} must be an integer >= 16")


def _check_rates(prune_rate: float, decoder_prune_rate: float) -> None:
    from trainables.pruning import validate_rate

    validate_rate("prune_rate", prune_rate)
    validate_rate("decoder_prune_rate", decoder_prune_rate)


@functools.lru_cache(maxsize=128)
def architecture_flops(
    model: str,
    backbone: str,
    input_size: int,
    num_classes: int,
    lrg: int | None = None,
    prune_rate: float = 0.0,
    decoder_prune_rate: float = 0.0,
    *,
    output_stride: int = 16,
) -> FlopsReport:
    """FLOPs of an architecture (random weights, pruned by rate when a rate > 0), cached per key.

    The pruned structure depends only on the filter counts, so an untrained model pruned with
    ``prune_for_counting`` costs what the trained pruned model costs. The global RNG is left as
    it was (the weights come from a forked generator). ``output_stride=32`` reproduces the
    paper's encoder figure (95.6 GFLOPs for ResNet-101 + ASPP at 513; 142.5 at stride 16).
    """
    from trainables.models import build_model, validate_lrg

    check_input_size(input_size)
    if prune_rate or decoder_prune_rate:
        _check_rates(prune_rate, decoder_prune_rate)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model(
            model,
            backbone=backbone,
            num_classes=num_classes,
            pretrained=False,
            output_stride=output_stride,
        )
        net.lrg = validate_lrg(lrg, net.native_grid(input_size))
        counted: nn.Module = net
        if prune_rate > 0 or decoder_prune_rate > 0:
            from trainables.compaction import prune_for_counting

            counted = prune_for_counting(net, prune_rate, decoder_prune_rate)
        return measure(counted, input_size)
