"""Block-wise (band-limited) annotation: labels down-sampled to an ``s x s`` grid and back.

A label map keeps only what an ``s x s`` grid can hold (``s = 2 nu_max + 1``, the frequencies
with ``k <= nu_max``): every grid cell takes the majority class of the pixels it covers, cells
without a valid pixel become ignore, and the grid is up-sampled to the full size by pixel centre. This is
the paper's weak annotation at band limit ``nu_max`` (DESIGN.md, "Block-wise annotation").

One cell geometry for both steps: cell ``i`` of an ``H``-pixel side is ``[i H / s, (i + 1) H / s)``.
Down-sampling votes with each pixel's area in each cell; up-sampling gives a pixel the label of the
cell holding its centre ``h + 1/2`` (cell ``floor((2h + 1) s / (2H))``), so a pixel lying mostly
in cell 2 takes cell 2's label (at ``H = 5, s = 3`` pixel 3 spans [1.8, 2.4) cells: cell 2).

Area averaging is exact: cell ``i`` of an ``H``-pixel side covers ``[i H / s, (i + 1) H / s)`` in
pixel coordinates, so when ``H`` is not a multiple of ``s`` a pixel straddling two cells counts in
both with the fraction of its area in each (integer weights, no rounding). Ties go to the smallest
class index. The vote is a scatter-add of those weights into a ``(B, C, s, s)`` tensor: no
one-hot image is built, so it is fast on the CPU and CUDA alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.errors import InputError
from trainables.grids import lrg_of_band

__all__ = ["blockwise_grid", "blockwise_labels", "cell_weights", "centre_cells"]


def blockwise_grid(nu_max: int, height: int, width: int) -> tuple[int, int]:
    """The label grid of band limit ``nu_max`` on an ``H x W`` map: ``min(s, H) x min(s, W)``.

    A side already at or below ``s = 2 nu_max + 1`` pixels keeps its native resolution: the
    identity at ``s >=`` the image size, read side by side, so on a crop that is not square a
    short side stays native while the long side is averaged onto ``s`` cells.
    """
    s = lrg_of_band(_check_band(nu_max))
    return min(s, height), min(s, width)


def _check_band(nu_max: int) -> int:
    """``nu_max`` as an int, or an InputError naming a negative or fractional value."""
    if isinstance(nu_max, bool) or int(nu_max) != nu_max:
        raise InputError(f"annotation band limit nu_max={nu_max!r} must be an integer >= 0")
    if nu_max < 0:
        raise InputError(f"annotation band limit nu_max={nu_max} must be >= 0")
    return int(nu_max)


def cell_weights(size: int, cells: int, device: torch.device) -> tuple[Tensor, ...]:
    """For each of ``size`` pixels: its first and second cell and their integer overlap weights.

    Units: a pixel spans ``cells`` units and a cell ``size`` units (``cells <= size``), so a
    pixel overlaps at most two cells and the weights are exact integers summing to ``cells``.
    """
    start = torch.arange(size, device=device) * cells  # pixel h spans [h*cells, (h+1)*cells)
    first = torch.div(start, size, rounding_mode="floor")
    w_first = torch.minimum(start + cells, (first + 1) * size) - start
    second = (first + 1).clamp(max=cells - 1)
    return first, w_first, second, cells - w_first


@torch.no_grad()
def blockwise_labels(
    labels: Tensor, nu_max: int, ignore_index: int = 255, num_classes: int | None = None
) -> Tensor:
    """Block-wise labels at band limit ``nu_max`` for ``labels`` (H, W) or (B, H, W).

    Returns a long tensor of the input's shape on its device. The grid is ``s x s`` with
    ``s = 2 nu_max + 1`` (a side of at most ``s`` pixels stays native); when ``s`` covers both
    sides the labels come back unchanged (the same tensor if it is already long).
    ``num_classes`` defaults to the largest valid label + 1; a label outside
    ``[0, num_classes)`` that is not ``ignore_index`` is an :class:`InputError`.
    """
    if labels.dim() not in (2, 3) or labels.is_floating_point() or labels.is_complex():
        raise InputError(
            f"labels must be an integer (H, W) or (B, H, W) tensor, got {labels.dtype} of "
            f"shape {tuple(labels.shape)}"
        )
    height, width = labels.shape[-2:]
    grid_h, grid_w = blockwise_grid(nu_max, height, width)
    if (grid_h, grid_w) == (height, width) or labels.numel() == 0:
        return labels if labels.dtype == torch.long else labels.long()
    batched = labels.long().reshape(-1, height, width)
    valid = batched != ignore_index
    classes = _num_classes(batched, valid, ignore_index, num_classes)
    votes = _votes(batched, valid, classes, grid_h, grid_w)
    grid = votes.argmax(dim=1)  # first maximum: ties go to the smallest class
    grid = grid.masked_fill(votes.sum(dim=1) == 0, ignore_index)
    rows = centre_cells(height, grid_h, grid.device)
    cols = centre_cells(width, grid_w, grid.device)
    return grid[:, rows[:, None], cols[None, :]].reshape(labels.shape)


def centre_cells(size: int, cells: int, device: torch.device) -> Tensor:
    """For each of ``size`` pixels, the cell of ``[i size / cells, (i + 1) size / cells)`` that
    holds its centre: ``floor((2 h + 1) cells / (2 size))`` (exact integer arithmetic)."""
    centres = 2 * torch.arange(size, device=device) + 1
    return torch.div(centres * cells, 2 * size, rounding_mode="floor")


def _num_classes(labels: Tensor, valid: Tensor, ignore_index: int, num_classes: int | None) -> int:
    """The class count, checking every valid label lies in ``[0, num_classes)``."""
    smallest = int(torch.where(valid, labels, 0).min())
    if smallest < 0:
        raise InputError(f"label {smallest} is negative and not the ignore index {ignore_index}")
    largest = int(torch.where(valid, labels, -1).max())
    if num_classes is None:
        return max(largest + 1, 1)
    if num_classes < 1:
        raise InputError(f"num_classes={num_classes} must be >= 1")
    if largest >= num_classes:
        raise InputError(
            f"label {largest} is outside [0, {num_classes}) and not the ignore index {ignore_index}"
        )
    return num_classes


def _votes(labels: Tensor, valid: Tensor, classes: int, grid_h: int, grid_w: int) -> Tensor:
    """Area-weighted class counts ``(B, C, grid_h, grid_w)`` (exact integers)."""
    batch, height, width = labels.shape
    device = labels.device
    # A cell sums to height * width units: int32 holds that for any realistic image.
    dtype = torch.int32 if height * width < 2**31 else torch.int64
    cells = grid_h * grid_w
    dump = batch * classes * cells  # one extra bin collects the ignored pixels
    key = (torch.arange(batch, device=device)[:, None, None] * classes + labels) * cells
    key = key.masked_fill_(~valid, dump)
    out = torch.zeros(dump + 1, dtype=dtype, device=device)
    y0, wy0, y1, wy1 = cell_weights(height, grid_h, device)
    x0, wx0, x1, wx1 = cell_weights(width, grid_w, device)
    for cy, wy in ((y0, wy0), (y1, wy1)):
        for cx, wx in ((x0, wx0), (x1, wx1)):
            weight = (wy[:, None] * wx[None, :]).to(dtype)
            if not bool(weight.any()):  # sides divisible by the grid: no straddling pixels
                continue
            offset = torch.where(valid, cy[:, None] * grid_w + cx[None, :], 0)
            out.index_add_(0, (key + offset).flatten(), weight.expand_as(key).flatten())
    return out[:dump].view(batch, classes, grid_h, grid_w)
