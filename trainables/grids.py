"""Grid sizes and band limits: the one place that converts between them (no torch).

- An ``s x s`` grid holds the square bands ``k <= (s - 1) // 2`` (DESIGN.md, "Band index"), so
  LRG ``s`` is band limit ``nu_max = (s - 1) // 2`` and band ``nu`` needs LRG ``2 nu + 1``.
- The decoder's native grid is the stride-4 feature size (129 for a 513 input); the image's own
  band is ``(input_size - 1) // 2`` (256 at 513): labels at that band are pixel-wise.
- The paper's LRG sizes and annotation limits at 513 x 513, and their values at other inputs.
"""

from __future__ import annotations

import math

from trainables.errors import InputError

#: The paper's LRG sizes at 513 x 513 (nu_max 64 ... 8).
PAPER_LRG_SIZES: tuple[int, ...] = (129, 97, 81, 65, 49, 33, 17)
#: The paper's annotation band limits at 513 x 513 (256 = pixel-wise).
PAPER_ANNOTATION_BANDS: tuple[int, ...] = (256, 32, 16, 8)
#: The input size the paper's figures are given at.
PAPER_INPUT_SIZE = 513


def band_of_lrg(s: int) -> int:
    """Band limit ``nu_max`` of an ``s x s`` grid: ``(s - 1) // 2``."""
    if s < 1:
        raise InputError(f"LRG size {s} must be >= 1")
    return (int(s) - 1) // 2


def lrg_of_band(nu: int) -> int:
    """Smallest odd grid size holding band ``nu``: ``2 nu + 1``."""
    if nu < 0:
        raise InputError(f"band limit {nu} must be >= 0")
    return 2 * int(nu) + 1


def native_grid_size(input_size: int) -> int:
    """The stride-4 grid of a stride-2 stem followed by a stride-2 pool (129 for 513, 17 for 65).

    Used to range-check ``lrg`` before a model exists; the built model's own
    ``native_grid`` is authoritative and is checked again when the trial starts.
    """
    return math.ceil(math.ceil(input_size / 2) / 2)


def native_band(input_size: int) -> int:
    """The highest band an ``input_size`` image holds (256 for 513): pixel-wise labels."""
    return (int(input_size) - 1) // 2


def image_band_of_native_grid(native: int) -> int:
    """The image band of an input whose stride-4 grid is ``native``: ``2 (native - 1)`` (256 for
    129), for runs that recorded the grid but not the input size."""
    return 2 * (int(native) - 1)


def paper_bands(input_size: int) -> dict[str, int]:
    """The paper's named band limits scaled to ``input_size``, keyed ``nu_{value}``.

    LRG sizes 129 ... 17 (``nu`` 64 ... 8) and annotation limits 256, 32, 16, 8 at 513 x 513,
    scaled by ``(input_size - 1) / 512``, rounded half up, deduplicated, in descending order.
    """
    if input_size < 1:
        raise InputError(f"input size {input_size} must be >= 1")
    scale = (input_size - 1) / (PAPER_INPUT_SIZE - 1)
    limits = [band_of_lrg(s) for s in PAPER_LRG_SIZES] + list(PAPER_ANNOTATION_BANDS)
    scaled = {max(0, math.floor(nu * scale + 0.5)) for nu in limits}
    return {f"nu_{nu}": nu for nu in sorted(scaled, reverse=True)}


def paper_lrgs(input_size: int, native: int) -> list[int]:
    """The paper's LRG sizes scaled to ``input_size`` (via :func:`paper_bands`), those between
    3 and ``native``, plus ``native`` itself; largest first."""
    sizes = {lrg_of_band(nu) for nu in paper_bands(input_size).values()}
    return sorted({s for s in sizes if 3 <= s <= native} | {native}, reverse=True)


__all__ = [
    "PAPER_ANNOTATION_BANDS",
    "PAPER_INPUT_SIZE",
    "PAPER_LRG_SIZES",
    "band_of_lrg",
    "image_band_of_native_grid",
    "lrg_of_band",
    "native_band",
    "native_grid_size",
    "paper_bands",
    "paper_lrgs",
]
