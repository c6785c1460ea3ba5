"""Spectral gradient (SpG, paper Sec. 2.2 / 3.1, Eq. 5-7, Fig. 2-3), by autograd through torch.fft.

For an operation ``Y = f(X)`` on a real ``M x M`` feature map, with ``x = fft2(X)`` and
``y = fft2(Y)`` (unnormalised DFT, frequencies in integer cycles per image,
``torch.fft.fftfreq(n) * n``), the SpG of an output frequency ``nu_i`` is the map over every input
frequency ``nu_j`` of ``|d y(nu_i) / d x(nu_j)|``, averaged over channels. For the decoder the
output is the CE component ``L_ce(nu_i)`` (paper Eq. 2) of its logits and ``x`` the spectrum of
the ASPP features. Eq. 5 says the map is close to a delta at ``nu_j = nu_i``: a feature component
at one frequency only moves the output (and the loss) at that frequency, which is what lets the
decoder drop high-frequency features (feature truncation).

Derivative convention (real input). ``X`` is real, so ``x(nu)`` and ``x(-nu)`` are conjugate and
not independent: perturbing ``x(nu_j)`` by a complex ``eps`` perturbs ``x(-nu_j)`` by
``conj(eps)``, i.e. ``dX = (2 / M^2) Re(eps exp(2 pi i nu_j . n / M))``. ``y(nu_i)`` is then a
function of ``eps`` and ``conj(eps)``; we report the Wirtinger derivative ``dy / d eps`` (with
``conj(eps)`` held fixed), the response to the ``+nu_j`` member of the pair. The response to the
``-nu_j`` member, ``dy / d conj(eps)``, is exactly the map's entry at ``-nu_j``, so the map over
all ``nu_j`` holds the whole real Jacobian. In terms of the spatial gradient ``g = dR / dX`` of a
real scalar ``R``: ``dR / dx(nu_j) = conj(G(nu_j)) / M^2`` with ``G = fft2(g)`` (also at the
self-conjugate frequencies 0 and Nyquist, where ``eps`` is real and this is the plain
derivative). A complex ``y = R1 + i R2`` takes ``dR1 + i dR2``. For a linear shift-invariant op
``y(nu) = k(nu) x(nu)`` this gives exactly ``k(nu_i)`` at ``nu_j = nu_i`` and 0 elsewhere, the
mirror ``-nu_i`` included: the circular conv is an exact delta.

Channels: ``|d y_o(nu_i) / d x_c(nu_j)|`` is averaged over the channel pairs the op connects:
every ``(o, c)`` for ``conv``, ``(c, c)`` for the channel-wise ``relu`` and ``upsample``, every
input channel ``c`` for the scalar ``L_ce(nu_i)`` of ``decoder``.

Ops (:data:`OPS`): ``conv``, a 3 x 3 conv with seeded random weights and **circular** padding
(periodic boundary, so the DFT diagonalises it and the delta is exact; zero padding would leak a
little energy off the delta); ``relu``; ``upsample``, bilinear x2 (``align_corners=False``, as the
models resize), whose output grid is ``2M`` so ``nu_i`` indexes the output spectrum and the
delta sits at ``nu_i`` wrapped onto the input grid; ``decoder``, the whole decoder of a project
model from its ASPP features to ``L_ce(nu_i)``, low-level (and DAN's mid-level) features held
fixed. The ``conv``, ``relu`` and ``upsample`` inputs are seeded standard-normal maps.

Summary per (op, nu_i): the peak ``nu_j`` and ``delta_fraction``, the share of
``sum_nu_j |SpG|^2`` at the delta ``nu_j = nu_i`` (1 for an exact delta; for ``relu`` it equals,
by Parseval, the fraction of active inputs, about 0.5 for zero-mean input, although the peak
stands far above every other entry). For ``decoder`` the delta is the conjugate pair
``nu_j = +-nu_i``: ``L_ce(nu)`` is real and ``L_ce(nu_i) = L_ce(-nu_i)``, so its derivative has
the same magnitude at ``x(nu_i)`` and ``x(-nu_i)`` and the share at ``nu_i`` alone could never
exceed 1/2 (for ``nu_i = 0`` the pair is one frequency).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.errors import InputError
from trainables.spectral import _check_pair, _one_hot, _valid_mask

if TYPE_CHECKING:
    from trainables.models import SegmentationModel

__all__ = [
    "DEFAULT_CHANNELS",
    "MIN_SIZE",
    "OPS",
    "DecoderInputs",
    "SpGMap",
    "SpGOp",
    "SpGSummary",
    "build_decoder_model",
    "builtin_op",
    "ce_frequency_map",
    "check_frequency",
    "conv_kernel",
    "dataset_decoder_inputs",
    "decoder_input_size",
    "decoder_spg",
    "default_frequencies",
    "frequencies",
    "op_spg",
    "output_size",
    "random_decoder_inputs",
    "spg",
]

#: Operations whose SpG this module measures, in the paper's order (Fig. 3, then Fig. 2).
OPS: tuple[str, ...] = ("conv", "relu", "upsample", "decoder")
#: Smallest feature map side: from 4 on, the default nu_i = M // 4 is a frequency other than 0.
MIN_SIZE = 4
#: Channels of the seeded ``conv`` / ``relu`` / ``upsample`` inputs.
DEFAULT_CHANNELS = 8
#: Output stride of the encoders: an ``M x M`` ASPP grid comes from a ``16 (M - 1) + 1`` input.
_OUTPUT_STRIDE = 16

Freq = tuple[int, int]


# --------------------------------------------------------------------------- frequencies


def frequencies(n: int) -> Tensor:
    """Integer frequencies (cycles per image) of an ``n``-point DFT in FFT order."""
    return (torch.fft.fftfreq(n) * n).round().long()


def _range(n: int) -> tuple[int, int]:
    """Lowest and highest frequency of an ``n``-point DFT: ``[-(n // 2), (n - 1) // 2]``."""
    return -(n // 2), (n - 1) // 2


def check_frequency(nu: Freq, n: int, what: str = "frequency") -> Freq:
    """``nu`` if both components lie on an ``n x n`` DFT grid, else an InputError naming it."""
    low, high = _range(n)
    if not all(low <= v <= high for v in nu):
        raise InputError(
            f"{what} {nu[0]},{nu[1]} is outside the {n}x{n} grid; expected components in "
            f"[{low}, {high}] cycles per image"
        )
    return int(nu[0]), int(nu[1])


def _index(nu: Freq, n: int) -> tuple[int, int]:
    """Row and column of frequency ``nu`` in an unshifted ``n x n`` spectrum (aliases wrap)."""
    return nu[0] % n, nu[1] % n


def _wrap(nu: Freq, n: int) -> Freq:
    """``nu`` aliased onto an ``n x n`` grid (for upsampling: the input frequency it comes from)."""
    grid = frequencies(n)
    iy, ix = _index(nu, n)
    return int(grid[iy]), int(grid[ix])


def default_frequencies(size: int) -> list[Freq]:
    """The paper's ``nu_i = 0, M/4, M/2`` on the diagonal: ``(0, 0), (M//4, M//4), (K, K)``.

    ``K = (M - 1) // 2`` is the highest frequency on the grid: ``M // 2`` for the paper's odd
    ``M = 33``, and one below the Nyquist frequency (which the grid stores as ``-M/2``) for even
    ``M``. On the diagonal each ``nu_i`` lies in square band ``k = max(|nu_y|, |nu_x|)`` 0, M/4
    and M/2, the bands the rest of the project measures.
    """
    if size < MIN_SIZE:
        raise InputError(f"size {size} must be >= {MIN_SIZE}")
    quarter, top = size // 4, (size - 1) // 2
    return list(dict.fromkeys([(0, 0), (quarter, quarter), (top, top)]))  # M = 4: two distinct


def output_size(op: str, size: int) -> int:
    """Side of the grid ``nu_i`` indexes for ``op`` on an ``M x M`` input (``2M`` for upsample)."""
    _check_op(op)
    return 2 * size if op == "upsample" else size


def _check_op(op: str) -> None:
    if op not in OPS:
        raise InputError(f"unknown op {op!r}; choose from: {', '.join(OPS)}")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SpGSummary:
    """Where one SpG map peaks and how much of its energy sits at the delta ``nu_j = nu_i``."""

    op: str
    nu_i: Freq  # output frequency, cycles per image
    peak_nu_j: Freq  # input frequency of the largest |SpG|
    delta_fraction: float  # |SpG(nu_i, nu_i)|^2 / sum_nu_j |SpG(nu_i, nu_j)|^2 (nan if all 0)

    def as_dict(self) -> dict[str, Any]:
        """The JSON record ``{op, nu_i: [y, x], peak_nu_j: [y, x], delta_fraction}``."""
        fraction = self.delta_fraction if math.isfinite(self.delta_fraction) else None
        return {
            "op": self.op,
            "nu_i": list(self.nu_i),
            "peak_nu_j": list(self.peak_nu_j),
            "delta_fraction": fraction,
        }


@dataclass(frozen=True)
class SpGMap:
    """``|d y(nu_i) / d x(nu_j)|`` over every input frequency ``nu_j`` of an ``M x M`` grid.

    ``magnitude`` is float64 ``(M, M)`` in unshifted FFT order (row ``i`` is ``nu_y =
    frequencies(M)[i]``). ``delta`` holds where Eq. 5 puts the delta: ``nu_i`` itself (for
    upsampling wrapped onto the input grid); for the decoder also ``-nu_i``, because
    ``L_ce(nu_i)`` is real and equal to ``L_ce(-nu_i)`` (one conjugate pair of the spectrum), so
    its derivative has the same magnitude at ``x(nu_i)`` and ``x(-nu_i)``.
    """

    op: str
    nu_i: Freq
    magnitude: Tensor
    delta: tuple[Freq, ...]

    @property
    def size(self) -> int:
        """Side ``M`` of the input grid."""
        return int(self.magnitude.shape[-1])

    @property
    def peak_nu_j(self) -> Freq:
        """Input frequency of the largest magnitude. Ties within 1e-6 relative (the conjugate
        pair of a real output) go to the first of :attr:`delta`, others to the first in FFT order."""
        peak = float(self.magnitude.max())
        for nu in self.delta:
            if float(self.magnitude[_index(nu, self.size)]) >= peak * (1 - 1e-6):
                return nu
        flat = int(torch.argmax(self.magnitude))
        grid = frequencies(self.size)
        return int(grid[flat // self.size]), int(grid[flat % self.size])

    @property
    def delta_fraction(self) -> float:
        """Share of the squared magnitude at the :attr:`delta` frequencies; nan for a zero map."""
        energy = self.magnitude.square()
        total = float(energy.sum())
        if total <= 0 or not math.isfinite(total):
            return math.nan
        return sum(float(energy[_index(nu, self.size)]) for nu in self.delta) / total

    def summary(self) -> SpGSummary:
        """The :class:`SpGSummary` of this map."""
        return SpGSummary(self.op, self.nu_i, self.peak_nu_j, self.delta_fraction)


# --------------------------------------------------------------------------- the derivative


def _spectral_derivative(grad: Tensor) -> Tensor:
    """``dR / dx(nu_j)`` per channel from the spatial gradient ``dR / dX`` (C, M, M) of a real R:
    ``conj(fft2(grad)) / M^2`` (complex128), the Wirtinger convention of the module docstring."""
    size = grad.shape[-1]
    return torch.fft.fft2(grad.to(torch.float64)).conj() / (size * size)


def _grad(value: Tensor, x: Tensor) -> Tensor:
    """``d value / d x`` (a real scalar's spatial gradient), zeros where it does not depend on x."""
    (grad,) = torch.autograd.grad(value, x, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


@dataclass(frozen=True)
class SpGOp:
    """One operation ``Y = f(X)`` whose SpG is measured.

    ``fn`` maps ``(1, C, M, M)`` to ``(1, C', M', M')``; ``channelwise`` says output channel ``c``
    depends on input channel ``c`` only, so only the ``(c, c)`` pairs are averaged.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    channelwise: bool


def op_spg(op: SpGOp, x: Tensor, nus: Sequence[Freq]) -> list[SpGMap]:
    """SpG maps of ``op`` at input ``x`` (C, M, M), one per output frequency in ``nus``.

    For each ``nu_i``: autograd gives the spatial gradients of ``Re y_o(nu_i)`` and
    ``Im y_o(nu_i)`` (``y = fft2(Y)``), :func:`_spectral_derivative` turns them into
    ``d y_o(nu_i) / d x_c(nu_j)``, whose magnitude is averaged over the connected channel pairs.
    Channel-wise ops need two backward passes per ``nu_i``, a mixing op ``2 C'``.
    """
    if x.dim() != 3 or x.shape[-1] != x.shape[-2]:
        raise InputError(f"input of shape {tuple(x.shape)} must be (C, M, M)")
    size = int(x.shape[-1])
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = op.fn(leaf.unsqueeze(0))[0]
        spectrum = torch.fft.fft2(out)
    out_size = int(spectrum.shape[-1])
    maps = []
    for nu in nus:
        iy, ix = _index(check_frequency(nu, out_size, "nu_i"), out_size)
        at_nu = spectrum[:, iy, ix]
        # channel-wise: one sum over channels yields every (c, c) derivative at once
        groups = [at_nu.sum()] if op.channelwise else list(at_nu)
        total = torch.zeros(leaf.shape, dtype=torch.float64)
        for value in groups:
            derivative = _spectral_derivative(_grad(value.real, leaf))
            derivative = derivative + 1j * _spectral_derivative(_grad(value.imag, leaf))
            total += derivative.abs()
        pairs = 1 if op.channelwise else len(groups)
        magnitude = total.mean(dim=0) / pairs
        delta = (_wrap(nu, size),)
        maps.append(SpGMap(op.name, (int(nu[0]), int(nu[1])), magnitude.detach(), delta))
    return maps


# --------------------------------------------------------------------------- conv, relu, upsample


def conv_kernel(channels: int = DEFAULT_CHANNELS, seed: int = 0) -> Tensor:
    """Seeded random 3 x 3 kernel ``(C, C, 3, 3)`` float64, He-scaled (std ``sqrt(2 / 9C)``)."""
    generator = torch.Generator().manual_seed(seed)
    kernel = torch.randn(channels, channels, 3, 3, generator=generator, dtype=torch.float64)
    return kernel * math.sqrt(2.0 / (9 * channels))


def _circular_conv(kernel: Tensor) -> Callable[[Tensor], Tensor]:
    """``conv2d`` with circular padding 1 (periodic boundary): diagonal in the DFT basis."""

    def fn(x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), kernel.to(x.dtype))

    return fn


def _upsample(x: Tensor) -> Tensor:
    """Bilinear x2 up-sampling, ``align_corners=False`` (as the models' ``resize``)."""
    return F.interpolate(
        x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False
    )


def builtin_op(name: str, channels: int = DEFAULT_CHANNELS, seed: int = 0) -> SpGOp:
    """The ``conv`` (circular padding, :func:`conv_kernel` weights), ``relu`` or ``upsample`` op."""
    _check_op(name)
    if name == "conv":
        return SpGOp("conv", _circular_conv(conv_kernel(channels, seed)), channelwise=False)
    if name == "relu":
        return SpGOp("relu", torch.relu, channelwise=True)
    if name == "upsample":
        return SpGOp("upsample", _upsample, channelwise=True)
    raise InputError("op 'decoder' needs a model: use decoder_spg")


def spg(
    name: str,
    size: int,
    nus: Sequence[Freq] | None = None,
    *,
    channels: int = DEFAULT_CHANNELS,
    seed: int = 0,
) -> list[SpGMap]:
    """SpG of the ``conv``, ``relu`` or ``upsample`` op on a seeded standard-normal
    ``(channels, size, size)`` input, at ``nus`` (default :func:`default_frequencies`)."""
    if size < MIN_SIZE:
        raise InputError(f"size {size} must be >= {MIN_SIZE}")
    if channels < 1:
        raise InputError(f"channels {channels} must be >= 1")
    op = builtin_op(name, channels, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(channels, size, size, generator=generator, dtype=torch.float64)
    return op_spg(op, x, default_frequencies(size) if nus is None else nus)


# --------------------------------------------------------------------------- decoder


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

        return int(model.aspp.out_channels), deeplab
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
    if size < MIN_SIZE:
        raise InputError(f"size {size} must be >= {MIN_SIZE}")
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

    from trainables.config import TrialConfig
    from trainables.trial import CHECKPOINT_FILE, apply_checkpoint, build_network, read_checkpoint

    path = Path(checkpoint).expanduser()
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    state = read_checkpoint(file)
    cfg = TrialConfig.from_dict(state["config"])
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
