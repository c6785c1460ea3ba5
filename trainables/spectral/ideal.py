"""The CE spectrum of an *ideal predictor* built from the labels alone (no model, no training).

The ideal predictor of labels ``L`` is the perfect, confident logit map ``Y = T * onehot(L)``
(all zeros at ignored pixels). Its CE is the same at every valid pixel,
``CE(T) = log(1 + (C - 1) exp(-T))``, and its CE spectrum (``ce_spectrum``, DESIGN.md
"Definitions") gives a label-only R_ce curve ``R_label(nu)``.

Closed form: where no pixel is ignored, ``yhat_c = logsumexp(Y) - Y_c = K - T B_c`` with ``K``
a constant, so every component off ``nu = 0`` is ``L_ce(nu) = -T sum_c |b_c(nu)|^2 / (N H W)``
and ``R_label(nu) = T / CE(T) * energy_above(nu)``: the ideal predictor's R_ce is the label
energy above the band limit scaled by ``T / CE(T)``. The temperature only sets that scale (the
calibration against the estimator); ignored pixels add a small correction.

:func:`dataset_label_spectra` reads a data set's labels (through its evaluation crop, as the
``spectrum`` command and the trials' evaluation do) and accumulates both spectra.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.spectral.accumulators import LabelSpectrumAccumulator, SpectrumAccumulator
from trainables.spectral.bands import _one_hot, _valid_mask

#: Default CE of the ideal predictor: about that of a well-trained segmentation network.
DEFAULT_IDEAL_CE = 0.1


def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(f"num_classes {num_classes!r} must be an integer >= 2 for a CE spectrum")
    return num_classes


def ideal_ce(num_classes: int, temperature: float) -> float:
    """CE of the ideal predictor at every valid pixel: ``log(1 + (C - 1) exp(-T))``."""
    _check_classes(num_classes)
    return math.log1p((num_classes - 1) * math.exp(-temperature))


def temperature_for_ce(num_classes: int, ce: float = DEFAULT_IDEAL_CE) -> float:
    """The temperature ``T`` whose ideal predictor has CE ``ce``: ``log((C-1) / (e^ce - 1))``."""
    _check_classes(num_classes)
    if not (math.isfinite(ce) and 0.0 < ce < math.log(num_classes)):
        raise InputError(
            f"ideal-predictor CE {ce} must be in (0, log C = {math.log(num_classes):.4g})"
        )
    return math.log((num_classes - 1) / math.expm1(ce))


def check_temperature(temperature: float) -> float:
    """A finite temperature > 0, else an InputError."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature {temperature} must be a finite number > 0")
    return float(temperature)


def ideal_logits(
    labels: Tensor, num_classes: int, temperature: float, ignore_index: int = 255
) -> Tensor:
    """``T * onehot(labels)`` as float64 ``(B, C, H, W)`` (all zeros at ignored pixels)."""
    _check_classes(num_classes)
    check_temperature(temperature)
    if labels.dim() == 2:
        labels = labels.unsqueeze(0)
    labels = labels.long()
    valid = _valid_mask(labels, num_classes, ignore_index)
    index = labels.masked_fill(~valid, 0)
    return _one_hot(index, valid, num_classes, torch.float64).mul_(temperature)


class IdealSpectrumAccumulator:
    """The ideal predictor's CE spectrum and the label spectrum, summed over a data set."""

    def __init__(self, num_classes: int, temperature: float, ignore_index: int = 255) -> None:
        self.num_classes = _check_classes(num_classes)
        self.temperature = check_temperature(temperature)
        self.ignore_index = ignore_index
        self.ce = SpectrumAccumulator(ignore_index=ignore_index, precision="double")
        self.labels = LabelSpectrumAccumulator(num_classes, ignore_index=ignore_index)

    def update(self, labels: Tensor) -> None:
        """Add a batch of labels ``(B, H, W)``."""
        logits = ideal_logits(labels, self.num_classes, self.temperature, self.ignore_index)
        self.ce.update(logits, labels)
        self.labels.update(labels)

    @property
    def n_images(self) -> int:
        return self.labels.n_images

    def r_ce(self) -> dict[int, float]:
        """``R_label(nu)`` for every band ``nu = 0 .. K`` (0 at the last band)."""
        bands = torch.arange(self.ce.max_band + 1)
        return {int(k): float(r) for k, r in zip(bands, self.ce.r_ce(bands), strict=True)}

    def energy_above(self) -> dict[int, float]:
        """Fraction of label energy above every band ``nu = 0 .. K``."""
        return {k: float(e) for k, e in enumerate(self.labels.energy_above.tolist())}


@dataclass(frozen=True)
class IdealSpectra:
    """What :func:`dataset_label_spectra` read: the accumulator and the data set's facts."""

    accumulator: IdealSpectrumAccumulator
    n_images: int
    num_classes: int


def dataset_label_spectra(
    dataset: Any,
    temperature: float | None = None,
    *,
    ideal_ce_target: float = DEFAULT_IDEAL_CE,
    limit: int | None = None,
    batch_size: int = 4,
    progress: bool = False,
    desc: str = "labels",
) -> IdealSpectra:
    """Read ``dataset``'s labels through its evaluation crop (``dataset.label(i)``, as the
    ``spectrum`` command does) and accumulate the ideal predictor's and the labels' spectra.

    ``temperature`` None: the one whose ideal predictor has CE ``ideal_ce_target``.
    """
    from tqdm import tqdm

    num_classes = int(dataset.num_classes)
    if temperature is None:
        temperature = temperature_for_ce(num_classes, ideal_ce_target)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count < 1:
        raise InputError("no labels to read (the data set or --limit is empty)")
    acc = IdealSpectrumAccumulator(num_classes, temperature, ignore_index=dataset.ignore_index)
    with tqdm(total=count, desc=desc, unit="img", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, count, batch_size):
            indices = range(start, min(start + batch_size, count))
            acc.update(torch.stack([dataset.label(i) for i in indices]))
            bar.update(len(indices))
    return IdealSpectra(acc, count, num_classes)


__all__ = [
    "DEFAULT_IDEAL_CE",
    "IdealSpectra",
    "IdealSpectrumAccumulator",
    "check_temperature",
    "dataset_label_spectra",
    "ideal_ce",
    "ideal_logits",
    "temperature_for_ce",
]
