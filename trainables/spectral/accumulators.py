"""Spectra summed over a data set: the CE spectrum and the label spectrum, batch by batch.

Both accumulate ratio-of-sums statistics (weighted by valid pixels, or by image x frequency for
the magnitudes); images may differ in size, shorter profiles being padded with zeros at the high
bands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.spectral.ce import CESpectrum, RelativeCE, ce_spectrum, check_precision
from trainables.spectral.labels import LabelSpectrum, _energy_above, label_spectrum

if TYPE_CHECKING:
    import pandas as pd


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


class SpectrumAccumulator(RelativeCE):
    """Band profile and CE summed over a data set (ratio of sums, weighted by valid pixels).

    Images may differ in size: shorter profiles are padded with zeros at the high bands; the
    magnitudes average over every (image, class, frequency) of a band that exists in it.
    """

    def __init__(self, ignore_index: int = 255, precision: str = "auto") -> None:
        self.ignore_index = ignore_index
        self.precision = check_precision(precision)
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
