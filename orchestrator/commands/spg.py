"""``spectral-sweep spg``: spectral gradients of decoder operations (paper Fig. 2-3, Eq. 5-7).

For each ``--op`` and output frequency ``nu_i`` it measures ``|d y(nu_i) / d x(nu_j)|`` over every
input frequency ``nu_j`` of an ``M x M`` feature map (:mod:`trainables.spg`; for ``decoder``,
``|d L_ce(nu_i) / d x(nu_j)|`` with ``x`` the spectrum of the ASPP features) and writes

- ``spg.csv``: one row per (op, nu_i, nu_j): ``op, nu_i_y, nu_i_x, nu_j_y, nu_j_x, magnitude``
  (integer cycles per image, ``nu_j`` in ascending order);
- ``spg.png``: one row of panels per op, one panel per ``nu_i``, the magnitude over ``nu_j``
  with 0 at the centre (the paper's Fig. 2 / 3);
- ``spg_summary.json``: a list of ``{op, nu_i: [y, x], peak_nu_j: [y, x], delta_fraction}``,
  ``delta_fraction`` the share of ``sum |.|^2`` at ``nu_j = nu_i`` (decoder: ``+-nu_i``, the
  conjugate pair a real ``L_ce(nu_i)`` stands for).

Default ``nu_i``: the paper's 0, M/4, M/2 on the diagonal, ``(0, 0), (M//4, M//4), (K, K)`` with
``K = (M - 1) // 2`` the highest frequency on the grid (16 for the paper's M = 33).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.spg import SpGMap

CSV_NAME = "spg.csv"
PNG_NAME = "spg.png"
SUMMARY_NAME = "spg_summary.json"
CSV_COLUMNS = ("op", "nu_i_y", "nu_i_x", "nu_j_y", "nu_j_x", "magnitude")
#: Flags only the decoder op reads (given without it they would be silently ignored).
DECODER_FLAGS = (
    "model",
    "backbone",
    "checkpoint_dir",
    "dataset",
    "data_root",
    "num_classes",
    "split",
    "images",
)
#: Defaults of the decoder flags that have one (None in the parser, so a given one is seen).
DECODER_DEFAULTS: dict[str, Any] = {"split": "val", "images": 1}


def register(sub: Any) -> None:
    """Add the ``spg`` parser."""
    p = sub.add_parser(
        "spg",
        help="spectral gradients |dy(nu_i)/dx(nu_j)| of conv, ReLU, upsampling, decoder (CSV+PNG)",
        description=(
            "Measure the spectral gradient (paper Eq. 5-7, Fig. 2-3) of decoder operations by "
            "autograd through the FFT: for each op and output frequency nu_i, |dy(nu_i)/dx(nu_j)| "
            "over every input frequency nu_j of an M x M feature map (decoder: |dL_ce(nu_i)/"
            "dx(nu_j)|, x = spectrum of the ASPP features). The conv op uses circular padding, "
            "so its SpG is an exact delta. Writes DIR/spg.csv, DIR/spg.png and "
            "DIR/spg_summary.json; prints each map's peak and delta fraction."
        ),
    )
    p.add_argument(
        "--op",
        action="append",
        required=True,
        metavar="OP",
        help="conv, relu, upsample or decoder (repeatable)",
    )
    p.add_argument("--size", type=int, default=33, help="feature map side M, 4 to 256 (paper: 33)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--nu",
        action="extend",
        nargs="+",
        default=None,
        metavar="Y,X",
        help="output frequencies nu_i in cycles per image (default 0,0 M//4,M//4 K,K with "
        "K = (M-1)//2; write negative ones as --nu=-3,4)",
    )
    p.add_argument("--model", default=None, help="decoder op: deeplabv3plus (default) or dan")
    p.add_argument("--backbone", default=None, help="decoder op: timm backbone (default resnet101)")
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="decoder op: a trained trial's checkpoint (directory or checkpoint.pt); "
        "default random weights",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="decoder op: features and labels from this data set's images (default seeded "
        "random features and smooth random labels)",
    )
    p.add_argument("--data-root", default=None, help="decoder op: data set root")
    p.add_argument("--split", default=None, help="decoder op: data set split (default val)")
    p.add_argument(
        "--images", type=int, default=None, help="decoder op: images averaged over (default 1)"
    )
    p.add_argument("--num-classes", type=int, default=None, help="decoder op: classes (default 21)")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, inputs, labels")
    p.add_argument("--json", action="store_true", help="print the summary records as JSON")
    p.set_defaults(func=run)


def parse_frequency(text: str) -> tuple[int, int]:
    """``"Y,X"`` as a pair of integers, or an InputError naming the text."""
    from trainables.errors import InputError

    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"--nu {text!r} is not Y,X (two integers, cycles per image)") from None


def check_ops(names: list[str]) -> list[str]:
    """The requested ops in order without repeats; an InputError lists the valid ones."""
    from trainables.errors import InputError
    from trainables.spg import OPS

    for name in names:
        if name not in OPS:
            raise InputError(f"unknown op {name!r}; choose from: {', '.join(OPS)}")
    return list(dict.fromkeys(names))


def check_args(args: argparse.Namespace) -> tuple[list[str], list[tuple[int, int]], Path]:
    """Every check that needs no model: ops, size, frequencies, counts, output directory."""
    from orchestrator.commands import check_output_dir
    from trainables.errors import InputError
    from trainables.spg import MAX_SIZE, MIN_SIZE, check_frequency, default_frequencies, output_size

    ops = check_ops(args.op)
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise InputError(f"--size {args.size} must be in [{MIN_SIZE}, {MAX_SIZE}]")
    if "decoder" not in ops:
        given = [f for f in DECODER_FLAGS if getattr(args, f) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise InputError(f"{flag} only applies to --op decoder, which was not requested")
    for name, default in DECODER_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.images < 1:
        raise InputError(f"--images {args.images} must be >= 1")
    if args.num_classes is not None and args.num_classes < 2:
        raise InputError(f"--num-classes {args.num_classes} must be >= 2")
    nus = (
        default_frequencies(args.size)
        if args.nu is None
        else list(dict.fromkeys(parse_frequency(t) for t in args.nu))
    )
    for op in ops:
        side = output_size(op, args.size)
        for nu in nus:
            check_frequency(nu, side, f"--nu for op {op!r}:")
    return ops, nus, check_output_dir(args.out)


def run(args: argparse.Namespace) -> int:
    """Check the input, measure every op, write CSV, PNG and JSON, print the summary."""
    from orchestrator.commands import make_output_dir

    ops, nus, out = check_args(args)
    decoder = _decoder_setup(args) if "decoder" in ops else None
    maps: list[SpGMap] = []
    for op in ops:
        began = time.perf_counter()
        print(
            f"spg {op}: {len(nus)} frequencies on a {args.size}x{args.size} grid ...",
            file=sys.stderr,
            flush=True,
        )
        maps += _measure(op, args, nus, decoder)
        print(f"spg {op}: done in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    make_output_dir(out)
    write_csv(maps, out / CSV_NAME)
    plot_spg(maps, ops, nus, out / PNG_NAME)
    records = [m.summary().as_dict() for m in maps]
    # one record per line: a valid JSON list that also reads (and diffs) line by line
    lines = ",\n".join(f" {json.dumps(r)}" for r in records)
    (out / SUMMARY_NAME).write_text(f"[\n{lines}\n]\n")
    if args.json:
        print(json.dumps(records))
        return 0
    print_summary(records)
    print(f"wrote {out / CSV_NAME}, {out / PNG_NAME} and {out / SUMMARY_NAME}")
    return 0


def _decoder_setup(args: argparse.Namespace) -> tuple[Any, list[Any], int]:
    """The model, its decoder inputs (data set images, or seeded random ones), the ignore label."""
    from trainables.models import check_backbone, check_model
    from trainables.spg import (
        build_decoder_model,
        dataset_decoder_inputs,
        decoder_input_size,
        random_decoder_inputs,
    )

    if args.model is not None:
        check_model(args.model)
    if args.backbone is not None:
        check_backbone(args.backbone)
    if args.dataset is not None:
        from trainables.data import dataset_spec

        dataset_spec(args.dataset)  # an unknown name fails before the model is built
    model = build_decoder_model(
        args.model, args.backbone, args.num_classes, args.checkpoint_dir, seed=args.seed
    )
    if args.dataset is None:
        return model, [random_decoder_inputs(model, args.size, seed=args.seed)], 255
    from trainables.data import build_dataset

    dataset = build_dataset(
        args.dataset,
        root=args.data_root,
        split=args.split,
        input_size=decoder_input_size(args.size),
        augment=False,
        num_classes=model.num_classes,
        seed=args.seed,
    )
    if dataset.num_classes != model.num_classes:
        from trainables.errors import InputError

        raise InputError(
            f"data set {args.dataset!r} has {dataset.num_classes} classes, the model "
            f"{model.num_classes}"
        )
    inputs = dataset_decoder_inputs(model, dataset, args.size, args.images)
    return model, inputs, int(dataset.ignore_index)


def _measure(
    op: str, args: argparse.Namespace, nus: list[tuple[int, int]], decoder: Any
) -> list[SpGMap]:
    from trainables.spg import decoder_spg, spg

    if op != "decoder":
        return spg(op, args.size, nus, seed=args.seed)
    model, inputs, ignore_index = decoder
    return decoder_spg(model, inputs, nus, ignore_index=ignore_index)


def write_csv(maps: list[SpGMap], path: Path) -> None:
    """One row per (op, nu_i, nu_j), ``nu_j`` ascending (0 in the middle), as :data:`CSV_COLUMNS`."""
    import csv

    import torch

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for m in maps:
            grid = torch.fft.fftshift(_grid(m.size)).tolist()
            shifted = torch.fft.fftshift(m.magnitude).tolist()
            for row, nu_y in zip(shifted, grid, strict=True):
                for value, nu_x in zip(row, grid, strict=True):
                    writer.writerow([m.op, *m.nu_i, nu_y, nu_x, f"{value:.9g}"])


def _grid(size: int) -> Any:
    from trainables.spg import frequencies

    return frequencies(size)


def print_summary(records: list[dict[str, Any]]) -> None:
    """The summary records as a table."""
    from orchestrator.table import format_table

    rows = [
        {
            "op": r["op"],
            "nu_i": "{},{}".format(*r["nu_i"]),
            "peak_nu_j": "{},{}".format(*r["peak_nu_j"]),
            "delta_fraction": r["delta_fraction"],
        }
        for r in records
    ]
    print(
        "spectral gradient |dy(nu_i)/dx(nu_j)|: peak and share of |.|^2 at the delta "
        "nu_j = nu_i (decoder: nu_j = +-nu_i)"
    )
    print(format_table(rows, ["op", "nu_i", "peak_nu_j", "delta_fraction"]))


def plot_spg(maps: list[SpGMap], ops: list[str], nus: list[tuple[int, int]], path: Path) -> None:
    """One row per op, one panel per ``nu_i``: magnitude over ``nu_j`` (fftshift, 0 centred),
    a colour bar per panel, the delta frequencies ringed."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_key = {(m.op, m.nu_i): m for m in maps}
    rows, cols = len(ops), len(nus)
    fig = Figure(figsize=(3.9 * cols, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global backend
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, op in enumerate(ops):
        for c, nu in enumerate(nus):
            ax, m = axes[r][c], by_key[(op, nu)]
            grid = _grid(m.size)
            low, high = int(grid.min()) - 0.5, int(grid.max()) + 0.5
            image = ax.imshow(
                torch.fft.fftshift(m.magnitude).numpy(),
                origin="lower",
                extent=(low, high, low, high),
                interpolation="nearest",
                cmap="viridis",
            )
            bar = fig.colorbar(image, ax=ax, shrink=0.85)
            bar.ax.tick_params(labelsize=9)
            for nu_y, nu_x in m.delta:
                ax.plot(nu_x, nu_y, marker="o", markersize=9, fillstyle="none", color="red")
            ax.set_title(f"{op}: nu_i = ({nu[0]}, {nu[1]})", fontsize=11)
            ax.set_xlabel("nu_j x (cycles / image)", fontsize=10)
            ax.set_ylabel("nu_j y", fontsize=10)
            ax.tick_params(labelsize=9)
    fig.suptitle(
        "spectral gradient |dy(nu_i) / dx(nu_j)| (decoder: |dL_ce(nu_i) / dx(nu_j)|)", fontsize=12
    )
    fig.savefig(path, dpi=110)
