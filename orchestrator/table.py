"""Plain-text tables for the terminal (no pandas needed)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_DIGITS = re.compile(r"(\d+)")


def cell(value: Any) -> str:
    """A compact text form: floats to 4 significant digits, None/NaN as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders the numbers inside names by value: nu3 < nu4 < nu32."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(str(text)))


def naturally_sorted(value: Any) -> Any:
    """``value`` with every mapping's keys in :func:`natural_key` order (recursively), for JSON
    that lists ``r_ce_nu3`` before ``r_ce_nu32``."""
    if isinstance(value, Mapping):
        return {k: naturally_sorted(value[k]) for k in sorted(value, key=natural_key)}
    if isinstance(value, list | tuple):
        return [naturally_sorted(v) for v in value]
    return value


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
