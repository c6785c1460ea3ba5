"""Band spectra of one-hot labels alone (no model): ``|b[k]|`` and the label energy per band."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.spectral.bands import (
    _CHUNK_ELEMENTS,
    _band_geometry,
    _band_sums,
    _chunks,
    _magnitude,
    _one_hot,
    _valid_mask,
    num_bands,
)


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
