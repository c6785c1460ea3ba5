"""SpG maps of one operation by autograd through ``torch.fft`` (the derivative convention is in
:mod:`trainables.spg`), their summaries, and the built-in ``conv``, ``relu`` and ``upsample`` ops."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.errors import InputError
from trainables.spg.frequencies import (
    DEFAULT_CHANNELS,
    MAX_SIZE,
    MIN_SIZE,
    Freq,
    _check_op,
    _index,
    _wrap,
    check_frequency,
    default_frequencies,
    frequencies,
)


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
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"size {size} must be in [{MIN_SIZE}, {MAX_SIZE}]")
    if channels < 1:
        raise InputError(f"channels {channels} must be >= 1")
    op = builtin_op(name, channels, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(channels, size, size, generator=generator, dtype=torch.float64)
    return op_spg(op, x, default_frequencies(size) if nus is None else nus)
