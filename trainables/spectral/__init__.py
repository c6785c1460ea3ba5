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

Precision: everything after the FFTs accumulates in float64, and ``yhat`` is formed with
``logsumexp = log1p(sum of the non-max classes' exp)``, so even float32 keeps a confident
pixel's small CE to its last bits. float32 FFTs keep Parseval to ~1e-7 relative while the CE is
not small against the spread of ``yhat``; for confident predictions the CE is a small
difference of large spectral terms and float32 FFTs lose up to 1e-3 of it. So
``precision="auto"`` (default) bounds the float32 error a priori from ``||B|| ||Yhat|| / CE``
and, when the bound exceeds 1e-6, runs that chunk's label and prediction FFTs in float64 on the
float32 ``yhat`` (Parseval to ~1e-12 of what it holds, the CE to ~1e-8 of the float64 one, each
band to ~1e-9 of the profile's scale); ``precision="double"`` forms ``yhat`` in float64 too.
Classes no pixel is labelled with need only a plot's ``|yhat|``: their FFTs stay in float32.
Code is device-agnostic; only the (K+1,)-long results come back to the CPU.

Modules: :mod:`~trainables.spectral.bands` (band geometry, input checks),
:mod:`~trainables.spectral.ce` (the CE spectrum and R_ce), :mod:`~trainables.spectral.labels`
(label spectra) and :mod:`~trainables.spectral.accumulators` (sums over a data set).
"""

from __future__ import annotations

from trainables.grids import band_of_lrg, lrg_of_band, paper_bands
from trainables.spectral.accumulators import LabelSpectrumAccumulator, SpectrumAccumulator
from trainables.spectral.bands import num_bands
from trainables.spectral.ce import (
    PRECISIONS,
    SINGLE_PRECISION_TOLERANCE,
    CESpectrum,
    RelativeCE,
    ce_spectrum,
    relative_ce_loss,
)
from trainables.spectral.labels import LabelSpectrum, label_spectrum

__all__ = [
    "PRECISIONS",
    "SINGLE_PRECISION_TOLERANCE",
    "CESpectrum",
    "LabelSpectrum",
    "LabelSpectrumAccumulator",
    "RelativeCE",
    "SpectrumAccumulator",
    "band_of_lrg",
    "ce_spectrum",
    "label_spectrum",
    "lrg_of_band",
    "num_bands",
    "paper_bands",
    "relative_ce_loss",
]
