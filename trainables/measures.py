"""FLOPs per IoU, the paper's efficiency measure, defined once (no torch).

``FPI = gflops / mIoU`` with mIoU as a fraction (DESIGN.md); the optimal LRG of a group is its
argmin. A trial's summary, the analysis of a sweep and a plan's predictions all use this.
"""

from __future__ import annotations

import math
from typing import Any


def fpi(gflops: Any, miou: Any) -> Any:
    """``gflops / miou``: a float for scalars (inf when mIoU <= 0, NaN when it is NaN: no
    measurement), elementwise for Series (the same values)."""
    if isinstance(miou, int | float):
        if math.isnan(miou):
            return math.nan
        return float(gflops) / float(miou) if miou > 0 else math.inf
    return gflops / miou


__all__ = ["fpi"]
