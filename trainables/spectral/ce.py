"""The CE spectrum of a batch (paper Eq. 2, 9, 10): ``L_ce[k]`` per square band and ``R_ce``.

See :mod:`trainables.spectral` for the decomposition, its speed and its precision.
:class:`RelativeCE` gives every spectrum (a batch's :class:`CESpectrum`, a data set's
``SpectrumAccumulator``) its ``r_ce`` from one implementation, :func:`relative_ce_loss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, overload

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.spectral.bands import (
    _CHUNK_ELEMENTS,
    _band_geometry,
    _band_sums,
    _check_pair,
    _chunks,
    _magnitude,
    _valid_mask,
    num_bands,
)

#: Upper bound on elements per FFT call: a few class maps at a time stay in cache (~1.4x faster).
_FFT_ELEMENTS = 1 << 21
#: Shifted logits below this only enter the softmax normaliser as exp() < 2e-35.
_EXP_FLOOR = -80.0
#: FFT precisions of :func:`ce_spectrum`.
PRECISIONS: tuple[str, ...] = ("auto", "single", "double")
#: Largest a-priori relative error of the CE sum for which "auto" keeps float32 FFTs.
SINGLE_PRECISION_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- R_ce


def _band_limits(nu_max: int | float | Tensor) -> Tensor:
    """``nu_max`` as a long CPU tensor, or an InputError naming a negative or fractional value."""
    nus = torch.as_tensor(nu_max).detach().cpu()
    if nus.is_complex() or (nus.is_floating_point() and not bool((nus == nus.round()).all())):
        raise InputError(f"band limit {nu_max} must be an integer")
    nus = nus.long()
    if bool((nus < 0).any()):
        raise InputError(f"band limit {int(nus.min())} must be >= 0")
    return nus


@overload
def relative_ce_loss(profile: Tensor, total: float, nu_max: int) -> float: ...
@overload
def relative_ce_loss(profile: Tensor, total: float, nu_max: Tensor) -> Tensor: ...
def relative_ce_loss(profile: Tensor, total: float, nu_max: int | Tensor) -> float | Tensor:
    """``R_ce(nu_max) = |1 - sum_{k <= nu_max} L_ce[k] / total|``; exactly 0 for ``nu_max >= K``.

    ``nu_max`` is an int (returns a float) or an integer tensor (returns float64 of its shape);
    nan where there is no CE to split (no valid pixel seen).
    """
    nus = _band_limits(nu_max)
    k_max = profile.numel() - 1
    if k_max < 0 or not math.isfinite(total) or total == 0:
        rate = torch.full(nus.shape, math.nan, dtype=torch.float64)
    else:
        kept = torch.cumsum(profile.to(torch.float64).cpu(), 0)[nus.clamp(max=k_max)]
        rate = (1.0 - kept / total).abs()
        rate = torch.where(nus >= k_max, torch.zeros_like(rate), rate)
    return rate if isinstance(nu_max, Tensor) else float(rate)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else an InputError listing them."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    return precision


class _Profiled(Protocol):
    @property
    def band_profile(self) -> Tensor: ...
    @property
    def total(self) -> float: ...


class RelativeCE:
    """``r_ce`` of anything with a ``band_profile`` and its ``total`` CE (paper Eq. 10)."""

    @overload
    def r_ce(self: _Profiled, nu_max: int) -> float: ...
    @overload
    def r_ce(self: _Profiled, nu_max: Tensor) -> Tensor: ...
    def r_ce(self: _Profiled, nu_max: int | Tensor) -> float | Tensor:
        """Relative CE lost by keeping bands ``k <= nu_max`` (:func:`relative_ce_loss`)."""
        return relative_ce_loss(self.band_profile, self.total, nu_max)


# --------------------------------------------------------------------------- CE spectrum


@dataclass(frozen=True)
class CESpectrum(RelativeCE):
    """CE of a batch split over square frequency bands ``k = 0 .. K``.

    ``band_profile`` sums to ``total`` (the spatial CE over valid pixels); the magnitudes are
    ``|b|`` and ``|yhat|`` averaged over images, classes and every frequency of a band
    (unnormalised DFT). ``band_counts`` (frequencies per band in one image) and ``n_images``
    let accumulators combine batches; ``precision`` says which FFTs ran.
    """

    band_profile: Tensor
    total: float
    label_magnitude: Tensor
    pred_magnitude: Tensor
    n_valid: int
    n_images: int = 1
    band_counts: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    precision: str = "single"  # FFT precision used: "single", "double" or "mixed" (by chunk)

    @property
    def max_band(self) -> int:
        """Highest band ``K``."""
        return self.band_profile.numel() - 1

    @property
    def truncated(self) -> Tensor:
        """``Lhat_ce(k) = sum_{j <= k} L_ce[j]`` for every k (paper Eq. 9)."""
        return torch.cumsum(self.band_profile, 0)


def _neg_log_softmax(logits: Tensor, dtype: torch.dtype) -> Tensor:
    """``yhat = logsumexp_c Y - Y`` in ``dtype``, accurate to the last bits of ``dtype`` even for
    confident pixels: shifted by the per-pixel max (a common offset of the logits cancels
    nothing), and with the max class's own ``exp(0) = 1`` kept out of the sum,
    ``logsumexp = log1p(sum of the other classes' exp)``. A confident pixel's CE is that small
    sum; ``log`` of a sum rounded to ``1 + eps`` would keep only ``1e-7 / CE`` of it in float32.
    """
    z = logits.to(dtype)
    top, argmax = z.max(dim=1, keepdim=True)
    z = z - top  # <= 0, with a 0 at the max class of every pixel
    # exp() of far-negative values (saturated softmax) takes a slow path on the CPU (~15x);
    # clamped, they still add < 1e-34 to the sum
    others = z.clamp(min=_EXP_FLOOR).exp_().scatter_(1, argmax, 0.0)
    lse = others.sum(dim=1, keepdim=True).log1p_()
    return z.neg_().add_(lse)


def _ce_sum(yhat: Tensor, index: Tensor, valid: Tensor) -> Tensor:
    """Sum of ``yhat`` at the label of every valid pixel (float64 scalar)."""
    at_label = yhat.gather(1, index.unsqueeze(1)).squeeze(1)
    return torch.where(valid, at_label, torch.zeros_like(at_label)).sum(dtype=torch.float64)


def _single_error_bound(yhat: Tensor, n_valid: int, ce_sum: float) -> float:
    """A-priori relative error of the float32-FFT CE sum: ``eps32 ||B|| ||Yhat|| / sum CE``.

    Measured errors stay below 0.4x this bound over random, smooth and confident logits; it
    grows as the CE shrinks against the logit spread (confident predictions).
    """
    if n_valid == 0:
        return 0.0  # b == 0: nothing to get wrong
    if ce_sum <= 0.0:
        return math.inf
    norm = float(torch.linalg.vector_norm(yhat))
    return torch.finfo(torch.float32).eps * math.sqrt(n_valid) * norm / ce_sum


def _spectral_maps(
    yhat: Tensor, index: Tensor, valid: Tensor, classes: slice, present: Tensor, double: bool
) -> Tensor:
    """Per half-spectrum coefficient: ``sum Re[conj(b) yhat]``, ``sum |b|``, ``sum |yhat|``
    over the images and the ``classes`` that ``yhat`` holds, as a float64 ``(3, H, W // 2 + 1)``
    tensor.

    ``present``: which of those classes some valid pixel has. An absent class has b = 0, so it
    adds nothing to the cross term or to |b|: its label FFT is skipped (a real image holds a
    few of its data set's classes, so most label FFTs are), and its ``|yhat|`` (a plot's
    magnitude) comes from an FFT in ``yhat``'s own precision. ``double``: the present classes'
    FFTs, label and prediction, run in float64 (``yhat`` cast), as confident predictions need.
    """
    height, width = yhat.shape[-2:]
    out = torch.zeros((3, height, width // 2 + 1), dtype=torch.float64, device=yhat.device)
    if not bool(present.all()):
        out[2] = _magnitude(torch.fft.rfft2(yhat[:, ~present])).sum((0, 1))
    if bool(present.any()):
        dtype = torch.float64 if double else yhat.dtype
        y = torch.fft.rfft2((yhat if bool(present.all()) else yhat[:, present]).to(dtype))
        ids = torch.arange(classes.start, classes.stop, device=yhat.device)[present]
        onehot = (index.unsqueeze(1) == ids.view(1, -1, 1, 1)).logical_and_(valid.unsqueeze(1))
        b = torch.fft.rfft2(onehot.to(dtype))
        out[0] = (b.real * y.real).add_(b.imag * y.imag).sum((0, 1))
        out[1] = _magnitude(b).sum((0, 1))
        out[2] += _magnitude(y).sum((0, 1))
    return out


@torch.no_grad()
def ce_spectrum(
    logits: Tensor, labels: Tensor, ignore_index: int = 255, *, precision: str = "auto"
) -> CESpectrum:
    """Band profile ``L_ce[k]`` of the CE of ``logits`` (B, C, H, W) against ``labels`` (B, H, W).

    Images are combined weighted by their valid pixels, so ``band_profile.sum()`` equals
    ``F.cross_entropy(logits, labels, ignore_index=ignore_index)`` to float rounding.
    ``precision``: ``"single"`` (float32 FFTs), ``"double"`` (``yhat`` and its FFTs in float64,
    also used for float64 logits) or ``"auto"``: float32 unless its error bound exceeds 1e-6
    relative (confident predictions, whose small CE is a difference of large spectral terms);
    then the float32 ``yhat`` goes through float64 FFTs, reported as ``"double"``.
    """
    check_precision(precision)
    logits, labels = _check_pair(logits, labels)
    batch, classes, height, width = logits.shape
    valid = _valid_mask(labels, classes, ignore_index)
    index = labels.masked_fill(~valid, 0)
    geometry = _band_geometry(height, width, logits.device)

    maps = torch.zeros(3, height, width // 2 + 1, dtype=torch.float64, device=logits.device)
    ce_total = torch.zeros((), dtype=torch.float64, device=logits.device)
    used: set[str] = set()
    for part in _chunks(batch, classes * height * width, _CHUNK_ELEMENTS):
        exact = precision == "double" or logits.dtype == torch.float64
        yhat = _neg_log_softmax(logits[part], torch.float64 if exact else torch.float32)
        labels_part, valid_part = index[part], valid[part]
        ce_part = _ce_sum(yhat, labels_part, valid_part)
        double = exact or (
            precision == "auto"
            and _single_error_bound(yhat, int(valid_part.sum()), float(ce_part))
            > SINGLE_PRECISION_TOLERANCE
        )
        present = torch.zeros(classes, dtype=torch.bool, device=logits.device)
        present[labels_part[valid_part]] = True
        for group in _chunks(classes, yhat.shape[0] * height * width, _FFT_ELEMENTS):
            maps += _spectral_maps(
                yhat[:, group], labels_part, valid_part, group, present[group], double
            )
        ce_total += ce_part
        used.add("double" if double else "single")
        del yhat
    sums = _band_sums(maps, geometry, num_bands(height, width)).cpu()

    n_valid = int(valid.sum())
    per_band = geometry.counts * (batch * classes)
    return CESpectrum(
        band_profile=sums[0] / (n_valid * height * width) if n_valid else sums[0] * 0.0,
        total=float(ce_total) / n_valid if n_valid else math.nan,
        label_magnitude=sums[1] / per_band,
        pred_magnitude=sums[2] / per_band,
        n_valid=n_valid,
        n_images=batch,
        band_counts=geometry.counts.clone(),
        precision=used.pop() if len(used) == 1 else "mixed",
    )
