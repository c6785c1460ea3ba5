"""Plain-text tables for the terminal (no pandas needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def cell(value: Any) -> str:
    """A compact text form: floats to 4 significant digits, None/NaN as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Mapping[str, str] | None = None,
) -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    names = [(headers or {}).get(c, c) for c in columns]
    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in body]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)
