"""The paper's Table 2 (GFLOPs of DeepLab v3+ and DAN under SFP and feature truncation), and
the project's count of every cell beside it.

Table 2 gives total GFLOPs at 513 x 513 with a ResNet-101 encoder, 21 classes, for LRG sizes
129 ... 17 and four SFP setups: no pruning, and encoder rates 0.2 / 0.4 / 0.6 with the decoder at
0.2. :func:`reproduce_table2` counts the same 56 cells with
:func:`trainables.flops.architecture_flops` under a FLOPs convention; the ``paper`` convention is
the one that reproduces it (``tests/test_flops.py`` holds every cell to 3 % unpruned, 5 % pruned;
measured: 0.9 % and 3.4 %).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: LRG sizes of the table's columns.
TABLE2_LRGS: tuple[int, ...] = (129, 97, 81, 65, 49, 33, 17)
#: (encoder rate, decoder rate) of the table's rows.
TABLE2_SETUPS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.2, 0.2), (0.4, 0.2), (0.6, 0.2))
#: The published GFLOPs, per model, one row per setup, one column per LRG.
PAPER_TABLE2: dict[str, tuple[tuple[int, ...], ...]] = {
    "deeplabv3plus": (
        (139, 120, 113, 107, 102, 98, 96),
        (100, 86, 81, 76, 73, 70, 69),
        (77, 63, 58, 53, 50, 47, 46),
        (59, 45, 40, 35, 32, 29, 28),
    ),
    "dan": (
        (107, 102, 100, 98, 97, 96, 96),
        (78, 73, 72, 70, 69, 69, 68),
        (55, 50, 49, 47, 46, 46, 45),
        (37, 32, 31, 29, 28, 28, 27),
    ),
}


@dataclass(frozen=True)
class Table2Cell:
    """One cell: the paper's GFLOPs and the project's count under one convention."""

    model: str
    prune_rate: float
    decoder_prune_rate: float
    lrg: int
    paper_gflops: float
    gflops: float

    @property
    def error(self) -> float:
        """Relative error of the project's count against the paper's figure."""
        return self.gflops / self.paper_gflops - 1.0


def reproduce_table2(
    convention: str = "paper", progress: Callable[[int, int], None] | None = None
) -> list[Table2Cell]:
    """Count all 56 cells of Table 2 (ResNet-101, 513, 21 classes) under ``convention``.

    ``progress(done, total)`` is called after each cell (counting takes a few seconds each).
    """
    from trainables.flops import grid_flops
    from trainables.flops_conventions import check_convention

    check_convention(convention)
    cells: list[Table2Cell] = []
    total = len(PAPER_TABLE2) * len(TABLE2_SETUPS) * len(TABLE2_LRGS)
    for model, rows in PAPER_TABLE2.items():
        for (rate, decoder_rate), row in zip(TABLE2_SETUPS, rows, strict=True):
            reports = grid_flops(
                model, "resnet101", 513, 21, TABLE2_LRGS, rate, decoder_rate, convention=convention
            )
            for lrg, paper in zip(TABLE2_LRGS, row, strict=True):
                cells.append(Table2Cell(model, rate, decoder_rate, lrg, paper, reports[lrg].gflops))
                if progress is not None:
                    progress(len(cells), total)
    return cells


__all__ = ["PAPER_TABLE2", "TABLE2_LRGS", "TABLE2_SETUPS", "Table2Cell", "reproduce_table2"]
