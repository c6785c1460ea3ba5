"""``spectral-sweep spaces``: list the built-in search spaces, or print one in the file schema."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``spaces`` parser."""
    p = sub.add_parser(
        "spaces",
        help="list the built-in search spaces",
        description=(
            "List the built-in search spaces (name, number of trials, description). With "
            "--show NAME, print that space as YAML in the --space-file schema, to copy and edit."
        ),
    )
    p.add_argument("--show", metavar="NAME", default=None, help="print this space as YAML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table, or one space as YAML."""
    from orchestrator.table import format_table
    from search_spaces import get_space, list_spaces

    if args.show is not None:
        from search_spaces.export import space_yaml

        print(space_yaml(get_space(args.show)).rstrip())
        return 0
    rows = []
    for name in list_spaces():
        space = get_space(name)
        rows.append({"name": name, "trials": len(space), "description": space.description})
    print(format_table(rows, ["name", "trials", "description"]))
    return 0
