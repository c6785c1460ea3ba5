"""The ``spectral-sweep`` command line: one sub-command per module in ``orchestrator.commands``.

Each command module exposes ``register(subparsers)`` (adds its parser, sets ``func``) and keeps
its heavy imports (torch, Ray, MLflow) inside the function that runs it, so ``--help`` is fast.
Bad input (:class:`trainables.errors.InputError`, argparse errors) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from orchestrator.process_gc import configure_process
from trainables.errors import InputError

#: Sub-commands in the order ``--help`` lists them; each is ``orchestrator.commands.<name>``.
COMMANDS: tuple[str, ...] = (
    "demo",
    "sweep",
    "spaces",
    "runs",
    "train",
    "flops",
    "spectrum",
    "spg",
    "analyze",
    "plan",
    "backtest",
)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("spectral-sweep")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = OneLineParser(
        prog="spectral-sweep",
        description=(
            "Ray Tune sweeps over LRG size, prune rate and annotation band limit for semantic "
            "segmentation networks, with the spectral CE analysis (R_ce), FLOPs, MLflow tracking "
            "and the mIoU-drop estimator."
        ),
    )
    parser.add_argument("--version", action="version", version=f"spectral-sweep {version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    for name in COMMANDS:
        importlib.import_module(f"orchestrator.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    configure_process()  # before the command's heavy imports: orchestrator.process_gc
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `sweep --config` re-parses it
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"spectral-sweep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spectral-sweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
