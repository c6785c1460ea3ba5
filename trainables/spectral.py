"""Frequency decomposition of the segmentation cross-entropy (paper Eq. 2, 9, 10).

The spatial CE of a logit map splits exactly (Parseval) into components per 2-D frequency
``nu = (nu_y, nu_x)``::

    L_ce(nu) = 1 / (N_valid * H * W) * sum_c Re[conj(b(nu, c)) * yhat(nu, c)]

with ``b = fft2(one-hot labels)`` (zero at ignored pixels), ``yhat = fft2(logsumexp_c Y - Y)``.
Components are summed over square bands ``k = max(|nu_y|, |nu_x|)``; the relative CE lost by a
band limit, ``R_ce(nu_max) = |1 - sum_{k <= nu_max} L_ce[k] / L_CE|``, predicts the mIoU lost by
truncating the decoder to an ``s x s`` grid (``s = 2 nu_max + 1``) or by block-wise labels.

Speed: real FFTs (``rfft2``) with Hermitian weights (a column standing for two conjugate
frequencies counts twice), ``yhat`` formed in space so one FFT per class and map, band sums by a
cached band-index map and ``index_add_``.

Precision: everything after the FFTs accumulates in float64. float32 FFTs keep Parseval to ~1e-7
relative while the CE is not small against the spread of ``yhat``; for confident predictions the
CE is a small difference of large spectral terms and float32 FFTs lose up to 1e-3 of it. So
``precision="auto"`` (default) bounds the float32 error a priori from ``||B|| ||Yhat|| / CE`` and
switches a chunk to float64 FFTs (about 2x slower) when the bound exceeds 1e-6. Code is
device-agnostic; only the (K+1,)-long results come back to the CPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.grids import band_of_lrg, lrg_of_band, paper_bands

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CESpectrum",
    "LabelSpectrum",
    "LabelSpectrumAccumulator",
    "SpectrumAccumulator",
    "band_of_lrg",
    "ce_spectrum",
    "label_spectrum",
    "lrg_of_band",
    "paper_bands",
]

#: Upper bound on B * C * H * W elements per chunk of images (bounds memory on big batches).
_CHUNK_ELEMENTS = 1 << 22
#: Upper bound on elements per FFT call: a few class maps at a time stay in cache (~1.4x faster).
_FFT_ELEMENTS = 1 << 21
#: Shifted logits below this only enter the softmax normaliser as exp() < 2e-35.
_EXP_FLOOR = -80.0
#: FFT precisions of :func:`ce_spectrum`.
PRECISIONS: tuple[str, ...] = ("auto", "single", "double")
#: Largest a-priori relative error of the CE sum for which "auto" keeps float32 FFTs.
SINGLE_PRECISION_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- geometry


def num_bands(height: int, width: int) -> int:
    """Number of square bands ``K + 1`` of an ``H x W`` spectrum (``K = max(H, W) // 2``)."""
    return max(height, width) // 2 + 1


@dataclass(frozen=True)
class _BandGeometry:
    """Band index and Hermitian weight of every ``rfft2`` coefficient of an ``H x W`` map."""

    index: Tensor  # (H * (W // 2 + 1),) long: band k of each rfft2 coefficient
    weight: Tensor  # (H, W // 2 + 1) float64: 1 or 2 full-spectrum frequencies it stands for
    counts: Tensor  # (K + 1,) float64 on the CPU: full-spectrum frequencies per band


@functools.lru_cache(maxsize=64)
def _band_geometry(height: int, width: int, device: torch.device) -> _BandGeometry:
    """Band map of the ``rfft2`` half-spectrum, cached per (H, W, device)."""
    cols = width // 2 + 1
    nu_y = (torch.fft.fftfreq(height, device=device) * height).round().abs().long()
    nu_x = torch.arange(cols, device=device)
    index = torch.maximum(nu_y[:, None], nu_x[None, :])
    weight = torch.full((height, cols), 2.0, dtype=torch.float64, device=device)
    weight[:, 0] = 1.0  # column 0 holds both members of its conjugate pairs
    if width % 2 == 0:
        weight[:, -1] = 1.0  # so does the Nyquist column of an even width
    counts = torch.zeros(num_bands(height, width), dtype=torch.float64, device=device)
    counts.index_add_(0, index.flatten(), weight.flatten())
    return _BandGeometry(index.flatten(), weight, counts.cpu())


def _band_sums(maps: Tensor, geometry: _BandGeometry, bands: int) -> Tensor:
    """Sum ``(M, H, Wr)`` half-spectrum maps over every full-spectrum frequency of each band."""
    weighted = (maps.to(torch.float64) * geometry.weight).flatten(1)
    out = torch.zeros(maps.shape[0], bands, dtype=torch.float64, device=maps.device)
    return out.index_add_(1, geometry.index, weighted)


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


# --------------------------------------------------------------------------- CE spectrum


@dataclass(frozen=True)
class CESpectrum:
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

    @overload
    def r_ce(self, nu_max: int) -> float: ...
    @overload
    def r_ce(self, nu_max: Tensor) -> Tensor: ...
    def r_ce(self, nu_max: int | Tensor) -> float | Tensor:
        """Relative CE lost by keeping bands ``k <= nu_max`` (paper Eq. 10)."""
        return relative_ce_loss(self.band_profile, self.total, nu_max)


def _check_pair(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Batched ``(B, C, H, W)`` logits and ``(B, H, W)`` labels, or an InputError naming both."""
    if logits.dim() == 3 and labels.dim() == 2:
        logits, labels = logits.unsqueeze(0), labels.unsqueeze(0)
    if (
        logits.dim() != 4
        or labels.dim() != 3
        or logits.shape[0] != labels.shape[0]
        or logits.shape[2:] != labels.shape[1:]
    ):
        raise InputError(
            f"logits of shape {tuple(logits.shape)} (B, C, H, W) do not match labels of shape "
            f"{tuple(labels.shape)} (B, H, W)"
        )
    if logits.shape[1] < 1 or 0 in logits.shape[2:]:
        raise InputError(f"logits of shape {tuple(logits.shape)} need C, H, W >= 1")
    if labels.is_floating_point() or labels.is_complex():
        raise InputError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    return logits, labels.to(device=logits.device, dtype=torch.long)


def _valid_mask(labels: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """Non-ignored pixels; an InputError if a label is neither a class nor ``ignore_index``."""
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        value = int(labels[bad][0])
        raise InputError(
            f"label {value} is outside [0, {num_classes}) and not the ignore index {ignore_index}"
        )
    return valid


def _one_hot(index: Tensor, valid: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """``(B, C, H, W)`` one-hot of class ``index`` (B, H, W), all zeros where not ``valid``."""
    shape = (index.shape[0], num_classes, *index.shape[1:])
    out = torch.zeros(shape, dtype=dtype, device=index.device)
    return out.scatter_(1, index.unsqueeze(1), valid.unsqueeze(1).to(dtype))


def _neg_log_softmax(logits: Tensor, dtype: torch.dtype) -> Tensor:
    """``yhat = logsumexp_c Y - Y`` in ``dtype``, shifted by the per-pixel max first so a common
    offset of the logits does not cancel away the precision of small (confident) values."""
    z = logits.to(dtype)
    z = z - z.amax(dim=1, keepdim=True)  # <= 0, with a 0 in every pixel: the exp-sum is >= 1
    # exp() of far-negative values (saturated softmax) takes a slow path on the CPU (~15x);
    # clamped, they still add < 1e-32 to a sum >= 1.
    lse = z.clamp(min=_EXP_FLOOR).exp_().sum(dim=1, keepdim=True).log_()
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


def _chunks(count: int, per_item: int, limit: int) -> list[slice]:
    """Slices of ``range(count)`` holding at most ``limit`` elements each (at least one item)."""
    step = max(1, limit // max(per_item, 1))
    return [slice(i, min(i + step, count)) for i in range(0, count, step)]


def _spectral_maps(yhat: Tensor, onehot: Tensor) -> Tensor:
    """Per half-spectrum coefficient: ``sum Re[conj(b) yhat]``, ``sum |b|``, ``sum |yhat|``
    over images and classes, as a float64 ``(3, H, W // 2 + 1)`` tensor."""
    b = torch.fft.rfft2(onehot)
    y = torch.fft.rfft2(yhat)
    cross = (b.real * y.real).add_(b.imag * y.imag).sum((0, 1))
    return torch.stack([cross, _magnitude(b).sum((0, 1)), _magnitude(y).sum((0, 1))]).double()


def _magnitude(z: Tensor) -> Tensor:
    """``|z|`` of a complex tensor; sqrt(re^2 + im^2) runs 2-3x faster than hypot on the CPU."""
    return (z.real.square() + z.imag.square()).sqrt_()


@torch.no_grad()
def ce_spectrum(
    logits: Tensor, labels: Tensor, ignore_index: int = 255, *, precision: str = "auto"
) -> CESpectrum:
    """Band profile ``L_ce[k]`` of the CE of ``logits`` (B, C, H, W) against ``labels`` (B, H, W).

    Images are combined weighted by their valid pixels, so ``band_profile.sum()`` equals
    ``F.cross_entropy(logits, labels, ignore_index=ignore_index)`` to float rounding.
    ``precision``: ``"single"`` (float32 FFTs), ``"double"`` (float64 FFTs, also used for
    float64 logits) or ``"auto"``: float32 unless its error bound exceeds 1e-6 relative
    (confident predictions, whose small CE is a difference of large spectral terms).
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    logits, labels = _check_pair(logits, labels)
    batch, classes, height, width = logits.shape
    valid = _valid_mask(labels, classes, ignore_index)
    index = labels.masked_fill(~valid, 0)
    geometry = _band_geometry(height, width, logits.device)

    maps = torch.zeros(3, height, width // 2 + 1, dtype=torch.float64, device=logits.device)
    ce_total = torch.zeros((), dtype=torch.float64, device=logits.device)
    used: set[str] = set()
    for part in _chunks(batch, classes * height * width, _CHUNK_ELEMENTS):
        double = precision == "double" or logits.dtype == torch.float64
        yhat = _neg_log_softmax(logits[part], torch.float64 if double else torch.float32)
        ce_part = _ce_sum(yhat, index[part], valid[part])
        if not double and precision == "auto":
            n_part = int(valid[part].sum())
            if _single_error_bound(yhat, n_part, float(ce_part)) > SINGLE_PRECISION_TOLERANCE:
                double = True
                yhat = _neg_log_softmax(logits[part], torch.float64)
                ce_part = _ce_sum(yhat, index[part], valid[part])
        onehot = _one_hot(index[part], valid[part], classes, yhat.dtype)
        for group in _chunks(classes, yhat.shape[0] * height * width, _FFT_ELEMENTS):
            maps += _spectral_maps(yhat[:, group], onehot[:, group])
        ce_total += ce_part
        used.add("double" if double else "single")
        del yhat, onehot
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


# --------------------------------------------------------------------------- accumulation


def _padded_add(acc: Tensor, values: Tensor) -> Tensor:
    """``acc + values`` with the shorter one padded by zeros at the high bands."""
    size = max(acc.numel(), values.numel())
    out = torch.zeros(size, dtype=torch.float64)
    out[: acc.numel()] += acc
    out[: values.numel()] += values.to(torch.float64).cpu()
    return out


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with nan where ``den`` is 0."""
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(num, math.nan))


def _normalised(values: Tensor) -> Tensor:
    """``values`` divided by their (finite) maximum."""
    finite = values[torch.isfinite(values)]
    peak = float(finite.max()) if finite.numel() else 0.0
    return values / peak if peak > 0 else values.clone()


class SpectrumAccumulator:
    """Band profile and CE summed over a data set (ratio of sums, weighted by valid pixels).

    Images may differ in size: shorter profiles are padded with zeros at the high bands; the
    magnitudes average over every (image, class, frequency) of a band that exists in it.
    """

    def __init__(self, ignore_index: int = 255, precision: str = "auto") -> None:
        if precision not in PRECISIONS:
            raise InputError(
                f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}"
            )
        self.ignore_index = ignore_index
        self.precision = precision
        self.n_images = 0
        self.n_valid = 0
        self._profile_sum = torch.zeros(0, dtype=torch.float64)  # sum_i N_i L_i[k]
        self._ce_sum = 0.0  # sum_i N_i L_i
        self._label_sum = torch.zeros(0, dtype=torch.float64)
        self._pred_sum = torch.zeros(0, dtype=torch.float64)
        self._count = torch.zeros(0, dtype=torch.float64)  # images x frequencies per band

    def update(self, logits: Tensor, labels: Tensor) -> CESpectrum:
        """Add the spectrum of one batch; returns it."""
        spectrum = ce_spectrum(
            logits, labels, ignore_index=self.ignore_index, precision=self.precision
        )
        self.add(spectrum)
        return spectrum

    def add(self, spectrum: CESpectrum) -> None:
        """Add a spectrum computed elsewhere (e.g. on another worker)."""
        self._profile_sum = _padded_add(self._profile_sum, spectrum.band_profile * spectrum.n_valid)
        if spectrum.n_valid:
            self._ce_sum += spectrum.total * spectrum.n_valid
        count = spectrum.band_counts.to(torch.float64).cpu() * spectrum.n_images
        self._label_sum = _padded_add(self._label_sum, spectrum.label_magnitude * count)
        self._pred_sum = _padded_add(self._pred_sum, spectrum.pred_magnitude * count)
        self._count = _padded_add(self._count, count)
        self.n_images += spectrum.n_images
        self.n_valid += spectrum.n_valid

    @property
    def band_profile(self) -> Tensor:
        """``L_ce[k]`` of the whole data set (sums to :attr:`total`)."""
        if not self.n_valid:
            return torch.zeros_like(self._profile_sum)
        return self._profile_sum / self.n_valid

    @property
    def total(self) -> float:
        """CE over every valid pixel seen (nan before any)."""
        return self._ce_sum / self.n_valid if self.n_valid else math.nan

    @property
    def max_band(self) -> int:
        """Highest band ``K`` seen."""
        return self._profile_sum.numel() - 1

    @property
    def label_magnitude(self) -> Tensor:
        """``|b[k]|`` averaged over images, classes and the frequencies of band k."""
        return _safe_div(self._label_sum, self._count)

    @property
    def pred_magnitude(self) -> Tensor:
        """``|yhat[k]|`` averaged over images, classes and the frequencies of band k."""
        return _safe_div(self._pred_sum, self._count)

    @overload
    def r_ce(self, nu_max: int) -> float: ...
    @overload
    def r_ce(self, nu_max: Tensor) -> Tensor: ...
    def r_ce(self, nu_max: int | Tensor) -> float | Tensor:
        """Relative CE lost by keeping bands ``k <= nu_max``, from the data-set sums."""
        return relative_ce_loss(self.band_profile, self.total, nu_max)

    def to_frame(self) -> pd.DataFrame:
        """One row per band: ``k, band_profile, r_ce, label/pred_magnitude(_norm)``."""
        import pandas as pd

        bands = torch.arange(self.max_band + 1)
        label, pred = self.label_magnitude, self.pred_magnitude
        return pd.DataFrame(
            {
                "k": bands.numpy(),
                "band_profile": self.band_profile.numpy(),
                "r_ce": self.r_ce(bands).numpy(),
                "label_magnitude": label.numpy(),
                "pred_magnitude": pred.numpy(),
                "label_magnitude_norm": _normalised(label).numpy(),
                "pred_magnitude_norm": _normalised(pred).numpy(),
            }
        )

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV (no index); returns the path."""
        path = Path(path)
        self.to_frame().to_csv(path, index=False)
        return path


# --------------------------------------------------------------------------- label spectrum


@dataclass(frozen=True)
class LabelSpectrum:
    """Band spectrum of one-hot labels alone (no model needed).

    ``label_magnitude[k]``: ``|b|`` averaged over images, classes and frequencies of band k.
    ``energy[k]``: ``sum_c |b_c(nu)|^2 / (H W)`` summed over band k and the images (sums to
    ``n_valid`` by Parseval). ``energy_above[k]``: fraction of that energy in bands ``> k``.
    """

    label_magnitude: Tensor
    energy: Tensor
    n_valid: int
    n_images: int
    band_counts: Tensor

    @property
    def energy_above(self) -> Tensor:
        """Fraction of label energy in bands above each band limit k."""
        return _energy_above(self.energy)


def _energy_above(energy: Tensor) -> Tensor:
    """``sum_{j > k} E[j] / sum_j E[j]`` for every k (exactly 0 at the last band)."""
    total = float(energy.sum())
    if total <= 0:
        return torch.full_like(energy, math.nan)
    above = (total - torch.cumsum(energy, 0)) / total
    above = above.clamp(min=0.0)
    above[-1] = 0.0
    return above


@torch.no_grad()
def label_spectrum(labels: Tensor, num_classes: int, ignore_index: int = 255) -> LabelSpectrum:
    """Per-band ``|b[k]|`` and label energy of ``labels`` (B, H, W) or (H, W)."""
    if num_classes < 1:
        raise InputError(f"num_classes {num_classes} must be >= 1")
    if labels.dim() == 2:
        labels = labels.unsqueeze(0)
    if labels.dim() != 3 or 0 in labels.shape[1:]:
        raise InputError(f"labels of shape {tuple(labels.shape)} must be (B, H, W) or (H, W)")
    if labels.is_floating_point() or labels.is_complex():
        raise InputError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    labels = labels.long()
    batch, height, width = labels.shape
    valid = _valid_mask(labels, num_classes, ignore_index)
    index = labels.masked_fill(~valid, 0)
    geometry = _band_geometry(height, width, labels.device)
    bands = num_bands(height, width)
    maps = torch.zeros(2, height, width // 2 + 1, dtype=torch.float64, device=labels.device)
    for part in _chunks(batch, num_classes * height * width, _CHUNK_ELEMENTS):
        b = torch.fft.rfft2(_one_hot(index[part], valid[part], num_classes, torch.float32))
        magnitude = _magnitude(b)
        maps[0] += magnitude.sum((0, 1))
        maps[1] += magnitude.to(torch.float64).square().sum((0, 1))
    sums = _band_sums(maps, geometry, bands).cpu()
    return LabelSpectrum(
        label_magnitude=sums[0] / (geometry.counts * (batch * num_classes)),
        energy=sums[1] / (height * width),
        n_valid=int(valid.sum()),
        n_images=batch,
        band_counts=geometry.counts.clone(),
    )


class LabelSpectrumAccumulator:
    """Label spectra summed over a data set (images may differ in size)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise InputError(f"num_classes {num_classes} must be >= 1")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.n_images = 0
        self.n_valid = 0
        self._label_sum = torch.zeros(0, dtype=torch.float64)
        self._count = torch.zeros(0, dtype=torch.float64)
        self._energy = torch.zeros(0, dtype=torch.float64)

    def update(self, labels: Tensor) -> LabelSpectrum:
        """Add the spectrum of a batch of labels; returns it."""
        spectrum = label_spectrum(labels, self.num_classes, ignore_index=self.ignore_index)
        self.add(spectrum)
        return spectrum

    def add(self, spectrum: LabelSpectrum) -> None:
        """Add a label spectrum computed elsewhere."""
        count = spectrum.band_counts.to(torch.float64).cpu() * spectrum.n_images
        self._label_sum = _padded_add(self._label_sum, spectrum.label_magnitude * count)
        self._count = _padded_add(self._count, count)
        self._energy = _padded_add(self._energy, spectrum.energy)
        self.n_images += spectrum.n_images
        self.n_valid += spectrum.n_valid

    @property
    def label_magnitude(self) -> Tensor:
        """``|b[k]|`` averaged over images, classes and the frequencies of band k."""
        return _safe_div(self._label_sum, self._count)

    @property
    def energy(self) -> Tensor:
        """Label energy per band (sums to the number of valid pixels)."""
        return self._energy.clone()

    @property
    def energy_above(self) -> Tensor:
        """Fraction of label energy in bands above each band limit k."""
        return _energy_above(self._energy)

    def to_frame(self) -> pd.DataFrame:
        """One row per band: ``k, label_magnitude, label_magnitude_norm, energy, energy_above``."""
        import pandas as pd

        label = self.label_magnitude
        return pd.DataFrame(
            {
                "k": torch.arange(label.numel()).numpy(),
                "label_magnitude": label.numpy(),
                "label_magnitude_norm": _normalised(label).numpy(),
                "energy": self._energy.numpy(),
                "energy_above": self.energy_above.numpy(),
            }
        )

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV (no index); returns the path."""
        path = Path(path)
        self.to_frame().to_csv(path, index=False)
        return path
