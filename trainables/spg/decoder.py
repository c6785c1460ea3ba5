"""SpG of a model's decoder: from its ASPP features to ``L_ce(nu_i)`` (paper Fig. 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.errors import InputError
from trainables.spectral.bands import _check_pair, _one_hot, _valid_mask
from trainables.spg.frequencies import (
    MAX_SIZE,
    MIN_SIZE,
    Freq,
    _index,
    _wrap,
    check_frequency,
    default_frequencies,
)
from trainables.spg.maps import SpGMap, _grad, _spectral_derivative

if TYPE_CHECKING:
    from trainables.models import SegmentationModel

#: Output stride of the encoders: an ``M x M`` ASPP grid comes from a ``16 (M - 1) + 1`` input.
_OUTPUT_STRIDE = 16


def ce_frequency_map(logits: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """``L_ce(nu)`` (paper Eq. 2) at every frequency of the ``H x W`` grid, differentiable.

    ``1 / (N_valid H W) sum_c Re[conj(b(nu, c)) yhat(nu, c)]`` with ``b = fft2(one-hot)``,
    ``yhat = fft2(logsumexp_c Y - Y)``, images combined weighted by valid pixels as in
    :func:`trainables.spectral.ce_spectrum`, whose band profile is this map summed over square
    bands (and whose total is the CE). Unshifted FFT order, float64.
    """
    logits, labels = _check_pair(logits, labels)
    _, classes, height, width = logits.shape
    valid = _valid_mask(labels, classes, ignore_index)
    z = logits.to(torch.float64)
    yhat = torch.logsumexp(z, dim=1, keepdim=True) - z
    onehot = _one_hot(labels.masked_fill(~valid, 0), valid, classes, torch.float64)
    b, y = torch.fft.fft2(onehot), torch.fft.fft2(yhat)
    cross = (b.real * y.real + b.imag * y.imag).sum(dim=(0, 1))
    n_valid = int(valid.sum())
    return cross / (n_valid * height * width) if n_valid else cross * 0.0


@dataclass(frozen=True)
class DecoderInputs:
    """One decoder input: ASPP features ``aspp`` (C, M, M), the fixed lower-level features
    (``low`` at stride 4 and, for DAN, ``mid`` at stride 8, each (C, h, w)) and the labels
    ``(S, S)`` the logits are scored against (``S`` = the image side)."""

    aspp: Tensor
    low: Tensor
    mid: Tensor | None
    labels: Tensor


def decoder_input_size(size: int) -> int:
    """Image side ``S = 16 (M - 1) + 1`` whose ASPP grid is ``M x M`` (513 for the paper's 33)."""
    return _OUTPUT_STRIDE * (size - 1) + 1


def _decoder_call(
    model: SegmentationModel,
) -> tuple[int, Callable[[Tensor, DecoderInputs], Tensor]]:
    """ASPP channel count and ``(aspp (1, C, M, M), inputs) -> logits (1, K, S, S)``."""
    from trainables.models import DAN, DeepLabV3Plus

    if isinstance(model, DeepLabV3Plus):

        def deeplab(aspp: Tensor, inputs: DecoderInputs) -> Tensor:
            low = inputs.low.unsqueeze(0).to(aspp.dtype)
            side = int(inputs.labels.shape[-1])
            return model.decoder(low, aspp, model.decoder_grid(low), (side, side))

        aspp = model.aspp
        assert aspp is not None  # DeepLab v3+ always has its ASPP
        return int(aspp.out_channels), deeplab
    if isinstance(model, DAN):

        def dan(aspp: Tensor, inputs: DecoderInputs) -> Tensor:
            low = inputs.low.unsqueeze(0).to(aspp.dtype)
            if inputs.mid is None:
                raise InputError("DAN decoder inputs need mid-level features")
            mid = inputs.mid.unsqueeze(0).to(aspp.dtype)
            side = int(inputs.labels.shape[-1])
            return model.decoder(low, mid, aspp, model.decoder_grid(low), (side, side))

        return int(model.decoder.deep_reduce.conv.in_channels), dan
    raise InputError(
        f"model {type(model).__name__} has no known decoder; expected DeepLab v3+ or DAN"
    )


def random_decoder_inputs(model: SegmentationModel, size: int, seed: int = 0) -> DecoderInputs:
    """Seeded decoder inputs for an ``M x M`` ASPP grid, with the encoder's geometry.

    Features are ``relu(N(0, 1))`` (non-negative, like the ReLU outputs they stand for) at the
    strides of a ``16 (M - 1) + 1`` image: ASPP ``M``, mid ``2 (M - 1) + 1``, low
    ``4 (M - 1) + 1``. Labels are smooth random regions (arg-max over classes of random fields on a
    ``max(2, M // 4)`` grid, bilinearly up-sampled to the image), so their spectrum is
    concentrated at low frequencies like real annotation.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"size {size} must be in [{MIN_SIZE}, {MAX_SIZE}]")
    channels, _ = _decoder_call(model)
    encoder = model.encoder
    generator = torch.Generator().manual_seed(seed)

    def features(count: int, side: int) -> Tensor:
        return torch.randn(count, side, side, generator=generator).clamp_(min=0.0)

    side = decoder_input_size(size)
    aspp = features(channels, size)
    mid = features(encoder.mid_channels, 2 * (size - 1) + 1)
    low = features(encoder.low_channels, 4 * (size - 1) + 1)
    coarse = max(2, size // 4)
    scores = torch.randn(1, model.num_classes, coarse, coarse, generator=generator)
    labels = F.interpolate(scores, size=(side, side), mode="bilinear", align_corners=False)
    return DecoderInputs(aspp, low, mid, labels[0].argmax(dim=0))


@torch.no_grad()
def dataset_decoder_inputs(
    model: SegmentationModel, dataset: Any, size: int, count: int = 1
) -> list[DecoderInputs]:
    """Decoder inputs of the first ``count`` images of ``dataset`` (built at side
    :func:`decoder_input_size`): the model's own encoder (and ASPP) features and the labels."""
    from trainables.models import DAN

    inputs = []
    for i in range(min(count, len(dataset))):
        image, labels = dataset[i]
        low, mid, deep = model.encoder(image.unsqueeze(0))
        head = getattr(model, "aspp", None)
        aspp = head(deep) if head is not None else deep
        if tuple(aspp.shape[-2:]) != (size, size):
            raise InputError(
                f"backbone {model.encoder.backbone_name!r} gives a {tuple(aspp.shape[-2:])} ASPP "
                f"grid on {tuple(image.shape[-2:])} images, not --size {size}"
            )
        keep_mid = mid[0] if isinstance(model, DAN) else None
        inputs.append(DecoderInputs(aspp[0], low[0], keep_mid, labels))
    if not inputs:
        raise InputError("the data set holds no image")
    return inputs


def decoder_spg(
    model: SegmentationModel,
    inputs: DecoderInputs | Sequence[DecoderInputs],
    nus: Sequence[Freq] | None = None,
    ignore_index: int = 255,
) -> list[SpGMap]:
    """SpG ``|d L_ce(nu_i) / d x(nu_j)|`` of the model's decoder, ``x`` = spectrum of the ASPP
    features, averaged over ASPP channels and over ``inputs`` (the model runs in eval mode).

    ``L_ce(nu_i)`` (:func:`ce_frequency_map`) is taken on the logits at the image size, where the
    trial scores them; ``nu_i`` must lie on the ``M x M`` ASPP grid (the same cycles per image on
    both grids). One forward and one backward pass per ``nu_i`` and input.
    """
    batch = [inputs] if isinstance(inputs, DecoderInputs) else list(inputs)
    if not batch:
        raise InputError("decoder_spg needs at least one input")
    size = int(batch[0].aspp.shape[-1])
    nus = (
        default_frequencies(size)
        if nus is None
        else [check_frequency(n, size, "nu_i") for n in nus]
    )
    channels, call = _decoder_call(model)
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    totals = [torch.zeros(size, size, dtype=torch.float64) for _ in nus]
    try:
        for item in batch:
            if item.aspp.shape != (channels, size, size):
                raise InputError(
                    f"ASPP features of shape {tuple(item.aspp.shape)}; expected "
                    f"({channels}, {size}, {size})"
                )
            leaf = item.aspp.to(param.device, param.dtype).detach().requires_grad_(True)
            moved = DecoderInputs(
                leaf,
                item.low.to(param.device),
                None if item.mid is None else item.mid.to(param.device),
                item.labels.to(param.device),
            )
            with torch.enable_grad():
                logits = call(leaf.unsqueeze(0), moved)
                loss = ce_frequency_map(logits, moved.labels.unsqueeze(0), ignore_index)
            side = int(loss.shape[-1])
            for total, nu in zip(totals, nus, strict=True):
                grad = _grad(loss[_index(nu, side)], leaf).detach().cpu()
                total += _spectral_derivative(grad).abs().mean(dim=0)
    finally:
        model.train(was_training)
    return [
        SpGMap("decoder", (int(nu[0]), int(nu[1])), total / len(batch), _pair(nu, size))
        for total, nu in zip(totals, nus, strict=True)
    ]


def _pair(nu: Freq, size: int) -> tuple[Freq, ...]:
    """``nu`` and its conjugate partner ``-nu`` on the grid (one entry when they coincide)."""
    plus, minus = _wrap(nu, size), _wrap((-nu[0], -nu[1]), size)
    return (plus,) if plus == minus else (plus, minus)


def build_decoder_model(
    name: str | None = None,
    backbone: str | None = None,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
) -> SegmentationModel:
    """The model whose decoder :func:`decoder_spg` measures, in eval mode on the CPU.

    Without ``checkpoint``: ``name`` (default ``deeplabv3plus``) over ``backbone`` (default
    ``resnet101``) with ``num_classes`` (default 21), random weights seeded by ``seed`` (the
    global RNG is left as it was), nothing downloaded. With ``checkpoint`` (a trial's
    ``checkpoint.pt`` or the directory holding it): the trained model, rebuilt from the
    checkpoint's own config and loaded as :func:`trainables.trial.evaluate_checkpoint` does;
    a given ``name``, ``backbone`` or ``num_classes`` must agree with it.
    """
    from trainables.models import build_model

    if checkpoint is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(
                name or "deeplabv3plus",
                backbone=backbone or "resnet101",
                num_classes=21 if num_classes is None else num_classes,
                pretrained=False,
            )
        return model.eval()

    from trainables.checkpoint import (
        apply_checkpoint,
        checkpoint_config,
        checkpoint_file,
        read_checkpoint,
    )
    from trainables.trial_setup import build_network

    file = checkpoint_file(Path(checkpoint).expanduser())
    state = read_checkpoint(file)
    cfg = checkpoint_config(state)
    arch = state.get("architecture") or {}
    classes = int(arch.get("num_classes", cfg.num_classes or 0))
    for what, given, saved in (
        ("model", name, cfg.model),
        ("backbone", backbone, cfg.backbone),
        ("num_classes", num_classes, classes),
    ):
        if given is not None and given != saved:
            raise InputError(
                f"{what} {given!r} disagrees with checkpoint {str(file)!r}, which holds {saved!r}"
            )
    trained: Any = build_network(cfg, classes, torch.device("cpu"), from_checkpoint=True)
    apply_checkpoint(state, file, trained, cfg)
    return trained.eval()
