"""``spectral-sweep spectrum``: the label spectrum of a data set (no model needed).

Reads every label of a split through the evaluation crop (``--size``), accumulates ``|b[k]|``
and the label energy per square band, and writes ``label_spectrum.csv`` (one row per band:
``k, label_magnitude, label_magnitude_norm, energy, energy_above``) and ``label_spectrum.png``.
The fraction of energy above a band limit says how much a grid of ``2 nu + 1`` cells, or
block-wise labels at ``nu``, must leave out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

CSV_NAME = "label_spectrum.csv"
PNG_NAME = "label_spectrum.png"


def register(sub: Any) -> None:
    """Add the ``spectrum`` parser."""
    p = sub.add_parser(
        "spectrum",
        help="label spectrum of a data set: |b[k]| and energy above each band (CSV + PNG)",
        description=(
            "Compute the spectrum of a data set's one-hot labels over square frequency bands "
            "k = max(|nu_y|, |nu_x|): |b[k]|, its normalised form and the fraction of label "
            "energy above each band limit. Writes DIR/label_spectrum.csv and "
            "DIR/label_spectrum.png and prints the energy above the paper's band limits."
        ),
    )
    p.add_argument("--dataset", required=True, help="a registered data set, e.g. voc")
    p.add_argument("--data-root", default=None, help="data set root (not for synthetic sets)")
    p.add_argument("--split", default="train", help="split to read (default train)")
    p.add_argument("--limit", type=int, default=None, help="read at most N images")
    p.add_argument("--size", type=int, default=513, help="eval crop size S (default 513)")
    p.add_argument(
        "--num-classes", type=int, default=None, help="class count (default: data set's)"
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data-set option, e.g. --option length=32 (repeatable)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="labels per FFT batch (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict; integer and float values are converted."""
    from trainables.errors import InputError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--option {item!r} is not KEY=VALUE")
        value: Any = raw
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
        options[key] = value
    return options


def _check_positive(flag: str, value: int | None) -> None:
    from trainables.errors import InputError

    if value is not None and value < 1:
        raise InputError(f"{flag} {value} must be >= 1")


def run(args: argparse.Namespace) -> int:
    """Accumulate the label spectrum, write CSV and PNG, print a summary."""
    import torch
    from tqdm import tqdm

    from orchestrator.commands import check_output_dir, make_output_dir
    from trainables.config import check_input_size
    from trainables.data import build_dataset
    from trainables.dataset_registry import check_root_applies
    from trainables.spectral import LabelSpectrumAccumulator

    for flag, value in (
        ("--limit", args.limit),
        ("--size", args.size),
        ("--batch-size", args.batch_size),
    ):
        _check_positive(flag, value)
    check_input_size(args.size, "--size")
    if args.data_root is not None:
        check_root_applies(args.dataset, repr(args.data_root))
    out = check_output_dir(args.out)
    dataset = build_dataset(
        args.dataset,
        root=args.data_root,
        split=args.split,
        input_size=args.size,
        augment=False,
        num_classes=args.num_classes,
        **parse_options(args.option),
    )
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    accumulator = LabelSpectrumAccumulator(dataset.num_classes, ignore_index=dataset.ignore_index)
    with tqdm(
        total=count,
        desc=f"{args.dataset} {args.split}",
        unit="img",
        file=sys.stderr,
        disable=args.no_progress,
    ) as bar:
        for start in range(0, count, args.batch_size):
            indices = range(start, min(start + args.batch_size, count))
            accumulator.update(torch.stack([dataset.label(i) for i in indices]))
            bar.update(len(indices))

    frame = accumulator.to_frame()
    make_output_dir(out)
    frame.to_csv(out / CSV_NAME, index=False)
    plot_spectrum(
        frame, args.size, f"{args.dataset} ({args.split}, {count} images)", out / PNG_NAME
    )
    print_summary(frame, args, count, dataset.num_classes)
    print(f"wrote {out / CSV_NAME} and {out / PNG_NAME}")
    return 0


def print_summary(frame: Any, args: argparse.Namespace, count: int, num_classes: int) -> None:
    """Energy above the paper's band limits (scaled to ``--size``) as a small table."""
    from orchestrator.table import format_table
    from trainables.grids import lrg_of_band, paper_bands

    above = frame.set_index("k")["energy_above"]
    rows = [
        {"nu_max": nu, "grid": lrg_of_band(nu), "energy_above": float(above.get(nu, 0.0))}
        for nu in paper_bands(args.size).values()
    ]
    print(
        f"{args.dataset} {args.split}: {count} images at {args.size}x{args.size}, "
        f"{num_classes} classes"
    )
    print("fraction of label energy above the paper's band limits (grid = 2 nu_max + 1):")
    print(format_table(rows, ["nu_max", "grid", "energy_above"]))


def plot_spectrum(frame: Any, size: int, title: str, path: Path) -> None:
    """Normalised ``|b[k]|`` and energy above ``k`` against ``k`` (log y), paper bands marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from trainables.grids import paper_bands

    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global backend
    ax = fig.add_subplot()
    k = frame["k"].to_numpy()
    ax.plot(k, frame["label_magnitude_norm"], label="|b[k]| / max")
    ax.plot(k, frame["energy_above"], label="energy above k")
    for nu in paper_bands(size).values():
        ax.axvline(nu, color="0.8", linewidth=0.8, zorder=0)
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("band k = max(|nu_y|, |nu_x|)")
    ax.set_ylabel("fraction")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
