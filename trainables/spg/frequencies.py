"""Frequencies of the SpG grids: integer cycles per image, checks, defaults, the measured ops."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.grids import band_of_lrg

#: Operations whose SpG this module measures, in the paper's order (Fig. 3, then Fig. 2).
OPS: tuple[str, ...] = ("conv", "relu", "upsample", "decoder")
#: Smallest feature map side: from 4 on, the default nu_i = M // 4 is a frequency other than 0.
MIN_SIZE = 4
#: Largest side: the decoder's input image for it (16 (M - 1) + 1) stays within a trial's 4096.
MAX_SIZE = 256
#: Channels of the seeded ``conv`` / ``relu`` / ``upsample`` inputs.
DEFAULT_CHANNELS = 8

Freq = tuple[int, int]


def frequencies(n: int) -> Tensor:
    """Integer frequencies (cycles per image) of an ``n``-point DFT in FFT order."""
    return (torch.fft.fftfreq(n) * n).round().long()


def _range(n: int) -> tuple[int, int]:
    """Lowest and highest frequency of an ``n``-point DFT: ``[-(n // 2), (n - 1) // 2]``."""
    return -(n // 2), band_of_lrg(n)


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
    quarter, top = size // 4, band_of_lrg(size)
    return list(dict.fromkeys([(0, 0), (quarter, quarter), (top, top)]))  # M = 4: two distinct


def output_size(op: str, size: int) -> int:
    """Side of the grid ``nu_i`` indexes for ``op`` on an ``M x M`` input (``2M`` for upsample)."""
    _check_op(op)
    return 2 * size if op == "upsample" else size


def _check_op(op: str) -> None:
    if op not in OPS:
        raise InputError(f"unknown op {op!r}; choose from: {', '.join(OPS)}")
