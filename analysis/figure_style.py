"""The report's figure style, shared by ``analysis.plots``: sized for a slide (fonts >= 9 pt),
legends outside the axes, a compact legend that copes with many groups, point labels that do
not overlap, and the checks the tests apply to every figure.

Groups are drawn with three channels, the same in every figure that shows them: one panel per
data set (small multiples), one line style and marker per model, one colour per *variant* (the
prune rate and any other key that splits groups, ordered so that the colour ramp follows it).
The legend then needs one entry per model and one per variant instead of one per group.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, cast

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: No text in a figure is smaller than this (points).
MIN_FONT_PT = 9.0
#: Saved resolution: a 10 in wide figure is 1500 px, sharp on a projector and in the HTML.
DPI = 150
RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
    "lines.linewidth": 1.5,
    "lines.markersize": 5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
#: Inches per panel (width, height) and the room kept for a legend on the right.
PANEL = (3.5, 3.2)
LEGEND_WIDTH = 2.4
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: Keys that are not a variant: they have a channel of their own.
MODEL, DATASET = "model", "dataset"

P = ParamSpec("P")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def styled(build: Callable[P, Figure | None]) -> Callable[P, Figure | None]:
    """Build the figure under :data:`RC` and :func:`finish` it (fonts, ticks)."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure | None:
        import matplotlib

        pyplot()
        with matplotlib.rc_context(cast(Any, RC)):
            fig = build(*args, **kwargs)
            if fig is not None:
                finish(fig)
        return fig

    return wrapper


def finish(fig: Figure) -> Figure:
    """Tick labels at 9 pt on every axes and no text below :data:`MIN_FONT_PT`."""
    for ax in fig.axes:
        ax.tick_params(labelsize=MIN_FONT_PT)
    for text in _non_tick_texts(fig):
        if float(text.get_fontsize()) < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)
    return fig


def _non_tick_texts(fig: Figure) -> Iterator[Any]:
    """Every text of ``fig`` but the tick labels (``tick_params`` sizes those): titles, axis
    labels and offsets, annotations, legends. Walked one level per container; the whole
    artist tree (``findobj``) would make every tick and costs a third of a small figure's
    save."""
    from matplotlib.axis import Axis
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    for parent in (fig, *fig.axes):
        for child in parent.get_children():
            if isinstance(child, Text):
                yield child
            elif isinstance(child, Legend):
                yield from (*child.get_texts(), child.get_title())
            elif isinstance(child, Axis):
                yield from (child.label, child.get_offset_text())


def panel_grid(
    n: int, rows_per_item: int = 1, max_columns: int = 3
) -> tuple[Figure, list[list[Axes]]]:
    """A figure with ``n`` items of ``rows_per_item`` stacked panels each, ``max_columns`` items
    per row, room on the right for the legend; returns the figure and each item's panels
    (top to bottom). Unused panels are hidden."""
    plt = pyplot()
    columns = max(1, min(n, max_columns))
    item_rows = math.ceil(n / columns)
    rows = item_rows * rows_per_item
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL[0] * columns + LEGEND_WIDTH, PANEL[1] * rows),
        layout="constrained",
        squeeze=False,
    )
    items: list[list[Axes]] = []
    for i in range(item_rows * columns):
        row, column = divmod(i, columns)
        panels = [axes[row * rows_per_item + r][column] for r in range(rows_per_item)]
        if i < n:
            items.append(panels)
        else:
            for ax in panels:
                ax.set_visible(False)
    return fig, items


# --------------------------------------------------------------------- channels


def variant_of(key: Mapping[str, Any]) -> str:
    """The variant text of a group key: every key but model and dataset (``prune 0.2``)."""
    parts = []
    for name, value in key.items():
        if name in (MODEL, DATASET):
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{name.split('_')[0]} {text}")
    return " / ".join(parts) or "all"


class Channels:
    """Line style and marker per model, colour per variant; and the legend that explains them."""

    def __init__(self, models: Iterable[str], variants: Iterable[str]) -> None:
        plt = pyplot()
        self.models = sorted(dict.fromkeys(str(m) for m in models))
        self.variants = sorted(dict.fromkeys(str(v) for v in variants), key=_natural)
        n = len(self.variants)
        ramp = plt.get_cmap("viridis")
        self._colors = {
            v: ("C0" if n == 1 else ramp(0.88 * i / (n - 1))) for i, v in enumerate(self.variants)
        }

    def color(self, variant: str) -> Any:
        return self._colors[str(variant)]

    def linestyle(self, model: str) -> str:
        return LINESTYLES[self.models.index(str(model)) % len(LINESTYLES)]

    def marker(self, model: str) -> str:
        return MARKERS[self.models.index(str(model)) % len(MARKERS)]

    def line(self, model: str, variant: str) -> dict[str, Any]:
        """Keyword arguments of ``ax.plot`` for one group's line."""
        return {
            "color": self.color(variant),
            "linestyle": self.linestyle(model),
            "marker": self.marker(model),
        }

    def handles(self, markers: bool = True) -> list[Any]:
        """Legend entries: a "model" section (line style, marker) and the variants' colours."""
        entries: list[Any] = [header("model")]
        for model in self.models:
            style = {"marker": self.marker(model)} if markers else {}
            entries.append(
                line_handle(model, color="0.3", linestyle=self.linestyle(model), **style)
            )
        return entries + self.variant_handles()

    def variant_handles(self) -> list[Any]:
        """The colours: ``prune rate: 0, 0.2, ...`` when the variants are prune rates."""
        if self.variants == ["all"]:
            return []
        prune = all(v.startswith("prune ") and " / " not in v for v in self.variants)
        entries: list[Any] = [header("prune rate" if prune else "setting")]
        for variant in self.variants:
            label = variant.removeprefix("prune ") if prune else variant
            entries.append(line_handle(label, color=self.color(variant), linewidth=3))
        return entries


def _natural(text: str) -> tuple[Any, ...]:
    """Order ``prune 0.2`` before ``prune 0.4`` before ``prune 0.4, 0.6``: numbers as numbers."""
    import re

    return tuple(
        (0, float(part)) if re.fullmatch(r"-?\d+(\.\d+)?", part) else (1, part)
        for part in re.split(r"[ /,]+", text)
    )


def line_handle(label: str, **style: Any) -> Any:
    """A legend entry drawn like a line with ``style``."""
    from matplotlib.lines import Line2D

    return Line2D([], [], label=label, **style)


def header(text: str, colon: bool = True) -> Any:
    """A legend entry without a symbol: a section title (or a note)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="none", marker="none", label=f"{text}:" if colon else text)


def outside_legend(fig: Figure, handles: Sequence[Any]) -> Any:
    """One legend for the whole figure, right of every panel (never over a curve)."""
    return fig.legend(handles=list(handles), loc="outside right upper", handlelength=2.6)


# --------------------------------------------------------------------- point labels


def freeze_layout(fig: Figure) -> Any:
    """Run the layout once and keep it: text placed afterwards sees final axes positions.
    Returns the renderer."""
    fig.canvas.draw()
    fig.set_layout_engine("none")
    return fig.canvas.get_renderer()  # type: ignore[attr-defined]


#: Where a point label may go, in points from its point: right-above first.
_OFFSETS = (
    (4, 3, "left", "bottom"),
    (4, -3, "left", "top"),
    (-4, 3, "right", "bottom"),
    (-4, -3, "right", "top"),
    (0, 6, "center", "bottom"),
    (0, -6, "center", "top"),
)


def place_labels(
    ax: Axes, renderer: Any, points: Sequence[tuple[float, float, str]], marker_pt: float = 5.0
) -> int:
    """Label points with ``MIN_FONT_PT`` text where the label covers no other label, no point
    and no line of the panel and stays inside it; a label that fits nowhere is left out.
    ``points`` come in order of priority. Call after :func:`freeze_layout`. Returns how many
    were placed."""
    import numpy as np

    scale = ax.figure.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    half = marker_pt * scale / 2 + 1
    centres = ax.transData.transform([(p[0], p[1]) for p in points]).reshape(-1, 2)
    boxes = [np.hstack([centres - half, centres + half])]
    for line in ax.get_lines():
        if line.get_visible() and line.get_linestyle() not in ("None", "none", ""):
            boxes.append(_segment_boxes(ax.transData.transform(line.get_xydata())))
    obstacles = np.vstack(boxes)
    labels = np.empty((0, 4))
    placed = 0
    for x, y, text in points:
        for dx, dy, ha, va in _OFFSETS:
            label = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=MIN_FONT_PT,
            )
            box = label.get_window_extent(renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            gap = box.padded(2.0)  # labels keep a gap between them
            if inside and not _hits(obstacles, box) and not _hits(labels, gap):
                labels = np.vstack([labels, [box.x0, box.y0, box.x1, box.y1]])
                placed += 1
                break
            label.remove()
    return placed


def _hits(boxes: Any, box: Any) -> bool:
    """Whether ``box`` overlaps any row ``x0, y0, x1, y1`` of ``boxes``."""
    return bool(
        (
            (boxes[:, 0] < box.x1)
            & (boxes[:, 2] > box.x0)
            & (boxes[:, 1] < box.y1)
            & (boxes[:, 3] > box.y0)
        ).any()
    )


def _segment_boxes(xy: Any, step: float = 3.0, half: float = 1.0) -> Any:
    """Small boxes every ``step`` pixels along a polyline (display coordinates)."""
    import numpy as np

    xy = xy[np.isfinite(xy).all(axis=1)]
    samples = [xy]
    for a, b in itertools.pairwise(xy):
        n = int(np.hypot(*(b - a)) // step)
        if n > 1:
            t = np.linspace(0.0, 1.0, n + 1)[1:-1, None]
            samples.append(a + t * (b - a))
    points = np.vstack(samples) if samples else np.empty((0, 2))
    return np.hstack([points - half, points + half])


# --------------------------------------------------------------------- checks


def small_texts(fig: Figure, minimum: float = MIN_FONT_PT) -> list[str]:
    """Visible texts (tick labels included, after a draw) smaller than ``minimum`` points."""
    from matplotlib.text import Text

    fig.canvas.draw()
    return [
        f"{t.get_text()!r} at {t.get_fontsize():g} pt"
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and float(t.get_fontsize()) < minimum
    ]


def legends_over_axes(fig: Figure) -> list[str]:
    """Legends whose box overlaps a visible panel's box (after a draw)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = list(fig.legends)
    legends += [legend for ax in fig.axes if (legend := ax.get_legend()) is not None]
    found = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible() and box.overlaps(ax.get_window_extent(renderer)):
                found.append(f"legend over the panel {ax.get_title()!r}")
    return found
