"""Block-wise labels: exact majority per cell (checked against a brute-force reference with
exact fractional areas), ignore cells, identity, shapes and bad input."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from trainables.data import blockwise_grid, blockwise_labels
from trainables.errors import InputError

IGNORE = 255


def reference(labels: torch.Tensor, nu_max: int, num_classes: int) -> torch.Tensor:
    """Brute force: exact area overlaps (Fractions), first-max vote, and each pixel back from
    the cell that holds its centre (found by scanning the cells' exact bounds)."""
    height, width = labels.shape
    grid_h, grid_w = min(2 * nu_max + 1, height), min(2 * nu_max + 1, width)

    def overlap(pixel: int, cell: int, size: int, cells: int) -> Fraction:
        low = max(Fraction(pixel), Fraction(cell * size, cells))
        high = min(Fraction(pixel + 1), Fraction((cell + 1) * size, cells))
        return max(high - low, Fraction(0))

    grid = torch.full((grid_h, grid_w), IGNORE, dtype=torch.long)
    for i in range(grid_h):
        for j in range(grid_w):
            votes = [Fraction(0)] * num_classes
            for h in range(height):
                wy = overlap(h, i, height, grid_h)
                if not wy:
                    continue
                for w in range(width):
                    label = int(labels[h, w])
                    wx = overlap(w, j, width, grid_w)
                    if label != IGNORE and wx:
                        votes[label] += wy * wx
            if max(votes) > 0:
                grid[i, j] = votes.index(max(votes))  # first maximum: smallest class wins ties

    def centre_cell(pixel: int, size: int, cells: int) -> int:
        centre = Fraction(2 * pixel + 1, 2)  # the pixel's centre, in pixel units
        return next(c for c in range(cells) if centre < Fraction((c + 1) * size, cells))

    rows = [centre_cell(h, height, grid_h) for h in range(height)]
    cols = [centre_cell(w, width, grid_w) for w in range(width)]
    return grid[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]]


def random_labels(
    shape: tuple[int, ...], classes: int, seed: int, ignore: float = 0.2
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, shape, generator=gen)
    return labels.masked_fill(torch.rand(shape, generator=gen) < ignore, IGNORE)


def test_majority_per_cell_on_a_hand_made_example() -> None:
    # 6 x 6 at nu_max = 1: a 3 x 3 grid of 2 x 2 cells.
    labels = torch.tensor(
        [
            [0, 0, 1, 1, 2, 2],
            [0, 1, 1, 2, 2, 255],  # cell (0,2): 2, 2, 2, 255 -> 2 (ignore does not vote)
            [3, 3, 255, 255, 0, 1],  # cell (1,1) all ignore -> 255
            [3, 0, 255, 255, 1, 1],
            [1, 2, 0, 0, 0, 1],  # cell (2,0): tie 1 vs 2 (2 each) -> the smaller class 1
            [2, 1, 0, 1, 255, 1],
        ]
    )
    expected_grid = torch.tensor([[0, 1, 2], [3, 255, 1], [1, 0, 1]])
    expected = expected_grid.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(blockwise_labels(labels, 1), expected)


def test_partial_pixels_count_by_area_when_the_side_is_not_a_multiple() -> None:
    # One row of 5 pixels onto 3 cells of 5/3 px: pixel 1 lies 2/3 in cell 0 and 1/3 in cell 1.
    labels = torch.tensor([[0, 1, 1, 0, 0]]).repeat(3, 1)
    # cell 0 = [0, 5/3): class 0 weight 1, class 1 weight 2/3 -> 0
    # cell 1 = [5/3, 10/3): class 1 weight 1/3 + 1 = 4/3, class 0 weight 1/3 -> 1
    # cell 2 = [10/3, 5): class 0 weight 5/3 -> 0
    out = blockwise_labels(labels, 1)
    # up-sampling by pixel centre: centres 0.5 .. 4.5 px lie in cells 0, 0, 1, 2, 2 (bounds at
    # 5/3 and 10/3 px); pixel 3 spans [3, 4): 2/3 of it, and its centre, in cell 2
    assert out[0].tolist() == [0, 0, 1, 0, 0]
    assert torch.equal(out, reference(labels, 1, 2))


def test_both_steps_use_one_cell_geometry() -> None:
    """Every pixel wholly inside one cell takes that cell's label (a constant block per cell,
    also at sides that are not multiples of the grid), and at H = 5, s = 3 pixel 3 takes cell 2."""
    labels = torch.tensor([[0, 0, 1, 2, 2]]).repeat(5, 1)
    out = blockwise_labels(labels, 1)
    assert out[0, 3] == 2  # top-left-corner assignment gave cell 1's label (1) here
    for size, nu in ((7, 1), (10, 2), (13, 3), (29, 4)):
        grid = 2 * nu + 1
        gen = torch.Generator().manual_seed(size)
        cells = torch.randint(0, 4, (grid, grid), generator=gen)
        bounds = [i * size / grid for i in range(grid + 1)]
        # labels constant on each cell's interior pixels; straddling pixels random
        image = torch.randint(0, 4, (size, size), generator=gen)
        for i in range(grid):
            for j in range(grid):
                rows = [h for h in range(size) if bounds[i] <= h and h + 1 <= bounds[i + 1]]
                cols = [w for w in range(size) if bounds[j] <= w and w + 1 <= bounds[j + 1]]
                image[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = cells[i, j]
        out = blockwise_labels(image, nu, num_classes=4)
        assert torch.equal(out, reference(image, nu, 4))


@pytest.mark.parametrize(
    ("shape", "nu_max"),
    [
        ((9, 9), 1),
        ((10, 10), 2),
        ((11, 7), 2),
        ((7, 13), 3),
        ((16, 12), 2),
        ((5, 23), 4),
        ((4, 40), 3),
    ],
)
def test_matches_the_brute_force_reference(shape: tuple[int, int], nu_max: int) -> None:
    labels = random_labels(shape, 4, seed=shape[0] * 100 + shape[1])
    out = blockwise_labels(labels, nu_max, num_classes=4)
    assert out.shape == labels.shape and out.dtype == torch.long
    assert torch.equal(out, reference(labels, nu_max, 4))


def test_identity_when_the_grid_covers_the_image() -> None:
    labels = random_labels((2, 33, 20), 5, seed=1)
    for nu_max in (16, 17, 256):  # s = 33, 35, 513 >= both sides
        assert torch.equal(blockwise_labels(labels, nu_max), labels)
    assert not torch.equal(blockwise_labels(labels, 15), labels)  # s = 31 < 33


def test_a_side_shorter_than_the_grid_stays_native() -> None:
    labels = random_labels((4, 40), 3, seed=2)
    assert blockwise_grid(3, 4, 40) == (4, 7)
    out = blockwise_labels(labels, 3)
    for row in range(4):  # each row is its own 1 x 40 problem
        assert torch.equal(out[row], blockwise_labels(labels[row : row + 1], 3)[0])


@pytest.mark.parametrize("shape", [(3, 17, 17), (2, 16, 16), (2, 15, 22), (1, 30, 9)])
def test_batched_equals_per_image_and_keeps_shape(shape: tuple[int, int, int]) -> None:
    labels = random_labels(shape, 6, seed=sum(shape))
    out = blockwise_labels(labels, 2, num_classes=6)
    assert out.shape == shape and out.dtype == torch.long
    for i in range(shape[0]):
        assert torch.equal(out[i], blockwise_labels(labels[i], 2, num_classes=6))
    # at most s x s distinct cells: a 5 x 5 grid upsampled
    assert out[0].unique(dim=0).shape[0] <= 5 and out[0].unique(dim=1).shape[1] <= 5


def test_grid_one_is_the_image_majority() -> None:
    labels = torch.tensor([[2, 2, 1], [0, 2, 255]])
    assert torch.equal(blockwise_labels(labels, 0), torch.full((2, 3), 2))
    assert torch.equal(blockwise_labels(torch.full((4, 4), IGNORE), 0), torch.full((4, 4), IGNORE))


def test_custom_ignore_index() -> None:
    labels = torch.tensor([[0, 0, -1, -1], [0, 1, -1, -1]])
    out = blockwise_labels(labels, 0, ignore_index=-1)
    assert torch.equal(out, torch.zeros(2, 4, dtype=torch.long))
    out = blockwise_labels(torch.full((4, 4), -1), 0, ignore_index=-1)
    assert torch.equal(out, torch.full((4, 4), -1))


@pytest.mark.parametrize("nu_max", [-1, -7])
def test_negative_band_limit_is_an_input_error(nu_max: int) -> None:
    with pytest.raises(InputError, match=str(nu_max)):
        blockwise_labels(torch.zeros(8, 8, dtype=torch.long), nu_max)


def test_bad_labels_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"2\.5"):
        blockwise_labels(torch.zeros(8, 8, dtype=torch.long), 2.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="float32"):
        blockwise_labels(torch.zeros(8, 8), 1)
    with pytest.raises(InputError, match="label 7"):
        blockwise_labels(torch.full((8, 8), 7), 1, num_classes=4)
    with pytest.raises(InputError, match="label -3"):
        blockwise_labels(torch.full((8, 8), -3), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    labels = random_labels((4, 65, 49), 7, seed=5)
    for nu_max in (2, 8, 16):
        cpu = blockwise_labels(labels, nu_max)
        gpu = blockwise_labels(labels.cuda(), nu_max)
        assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
