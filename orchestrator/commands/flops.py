"""``spectral-sweep flops``: FLOPs and parameters of one architecture, split encoder / decoder."""

from __future__ import annotations

import argparse
import json
from typing import Any

from trainables.errors import InputError

#: Architecture flags and their defaults (ResNet-101 DeepLab v3+ at 513, 21 classes, native).
ARCHITECTURE_FLAGS: dict[str, Any] = {
    "model": "deeplabv3plus",
    "backbone": "resnet101",
    "input_size": 513,
    "num_classes": 21,
    "lrg": None,
    "prune_rate": 0.0,
    "decoder_prune_rate": 0.0,
    "output_stride": None,
}


def register(sub: Any) -> None:
    """Add the ``flops`` parser."""
    p = sub.add_parser(
        "flops",
        help="count FLOPs and parameters of a model (fvcore)",
        description=(
            "Count the FLOPs (gflops = 2 x fvcore multiply-adds) and parameters of one model at "
            "one input size, split into encoder (backbone + ASPP) and decoder, with optional "
            "feature truncation (--lrg) and soft filter pruning rates. Random weights: nothing "
            "is downloaded."
        ),
    )
    # architecture flags default to None so --table2 (which fixes them all) can refuse them
    p.add_argument("--model", default=None, help="deeplabv3plus (default) or dan")
    p.add_argument("--backbone", default=None, help="any timm backbone (default resnet101)")
    p.add_argument("--input-size", type=int, default=None, help="square input size (default 513)")
    p.add_argument("--num-classes", type=int, default=None, help="number of classes (default 21)")
    p.add_argument(
        "--lrg", type=int, default=None, help="decoder grid size s in [3, native] (default native)"
    )
    p.add_argument("--prune-rate", type=float, default=None, help="encoder SFP rate in [0, 0.9]")
    p.add_argument(
        "--decoder-prune-rate", type=float, default=None, help="decoder SFP rate in [0, 0.9]"
    )
    p.add_argument(
        "--output-stride",
        type=int,
        default=None,
        help="encoder output stride 8, 16 (default, as trained) or 32; --convention paper is 32",
    )
    p.add_argument(
        "--convention",
        default="compact",
        help=(
            "compact (default: the trained network, pruned filters removed) or paper (the "
            "paper's Table 2: output stride 32, SFP counted in He et al.'s ResNet setting)"
        ),
    )
    p.add_argument(
        "--table2",
        action="store_true",
        help=(
            "count all 56 cells of the paper's Table 2 and print them beside the paper's "
            "(--convention paper reproduces them; the default, compact, shows what the "
            "trained networks cost)"
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Count and print (a table, or JSON with --json)."""
    from trainables.flops import architecture_flops
    from trainables.flops_conventions import check_convention
    from trainables.models import check_backbone, check_model

    check_convention(args.convention)
    if args.table2:
        given = [
            f"--{name.replace('_', '-')}"
            for name in ARCHITECTURE_FLAGS
            if getattr(args, name) is not None
        ]
        if given:
            raise InputError(
                f"--table2 counts the paper's own architectures; drop {', '.join(given)} "
                "(only --convention and --json apply)"
            )
        return print_table2(args.convention, args.json)
    for name, default in ARCHITECTURE_FLAGS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    check_model(args.model)
    check_backbone(args.backbone)
    report = architecture_flops(
        args.model,
        args.backbone,
        args.input_size,
        args.num_classes,
        args.lrg,
        args.prune_rate,
        args.decoder_prune_rate,
        output_stride=args.output_stride,
        convention=args.convention,
    )
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    from orchestrator.table import format_table

    rows = [
        {
            "part": part,
            "gflops": getattr(report, f"{prefix}gflops"),
            "gmacs": getattr(report, f"{prefix}gmacs"),
            "params": getattr(report, f"{prefix}params"),
        }
        for part, prefix in (("encoder", "encoder_"), ("decoder", "decoder_"), ("total", ""))
    ]
    lrg = "native" if args.lrg is None else args.lrg
    print(
        f"{args.model} / {args.backbone}, input {args.input_size}, {args.num_classes} classes, "
        f"lrg {lrg}, prune rate {args.prune_rate} (decoder {args.decoder_prune_rate}), "
        f"FLOPs convention {args.convention}"
    )
    print(format_table(rows, ["part", "gflops", "gmacs", "params"]))
    return 0


def print_table2(convention: str, as_json: bool) -> int:
    """Count Table 2 (progress on stderr) and print ours beside the paper's, per model."""
    import sys

    from orchestrator.table import format_table
    from trainables.table2 import TABLE2_LRGS, reproduce_table2

    def progress(done: int, total: int) -> None:
        print(f"\rcounting Table 2: {done}/{total} cells", end="", file=sys.stderr, flush=True)

    cells = reproduce_table2(convention, progress)
    print(file=sys.stderr)
    if as_json:
        print(json.dumps([{**vars(c), "error": c.error} for c in cells]))
        return 0
    for model in dict.fromkeys(c.model for c in cells):
        rows = []
        for rate in dict.fromkeys(c.prune_rate for c in cells if c.model == model):
            row = [c for c in cells if c.model == model and c.prune_rate == rate]
            setup = "baseline" if rate == 0 else f"{rate:.0%} PR (decoder 20%)"
            rows.append({"setup": setup, **{str(c.lrg): _cell(c) for c in row}})
            worst = max(row, key=lambda c: abs(c.error))
            rows[-1]["worst"] = f"{worst.error:+.1%}"
        print(f"{model}: GFLOPs ours / paper ({convention} convention)")
        print(format_table(rows, ["setup", *map(str, TABLE2_LRGS), "worst"]))
    return 0


def _cell(cell: Any) -> str:
    return f"{cell.gflops:.1f}/{cell.paper_gflops:.0f}"
