"""``spectral-sweep runs``: the MLflow runs of a sweep as a table (or CSV on stdout)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator.commands import add_tracking_uri
from trainables.errors import InputError
from trainables.run_schema import Metric, Tag

#: The table's columns: frame column -> header.
MAIN_COLUMNS = {
    "run_name": "trial",
    "status": "status",
    "params.model": "model",
    "params.dataset": "dataset",
    "params.lrg_effective": "lrg",
    "params.prune_rate": "prune_rate",
    "params.annotation_nu_max": "annotation_nu_max",
    f"metrics.{Metric.EPOCH}": "epochs",  # done: the 0-based epoch metric + 1
    f"metrics.{Metric.MIOU}": "miou",
    f"metrics.{Metric.GFLOPS}": "gflops",
    f"metrics.{Metric.FPI}": "fpi",
    f"metrics.{Metric.R_CE_LRG}": "r_ce_lrg",
    f"tags.{Tag.ROLE}": "role",
}


def register(sub: Any) -> None:
    """Add the ``runs`` parser."""
    p = sub.add_parser(
        "runs",
        help="list a sweep's MLflow runs",
        description=(
            "List the runs of an MLflow experiment (one per trial): the main params and latest "
            "metrics as a table, or with --csv as CSV on stdout: first the columns `analyze "
            "--runs-csv` reads (model, dataset, prune_rate, lrg, miou, gflops, "
            "annotation_nu_max, r_ce_nu*, seed, run_id, backbone, input_size, "
            "decoder_prune_rate, truncation, native_lrg, num_classes, spectrum_uri), the run's "
            "state (status, role, stopped_early), then every tag, param and metric."
        ),
    )
    p.add_argument("--experiment", required=True, help="experiment (= sweep) name")
    add_tracking_uri(p)
    p.add_argument(
        "--csv",
        action="store_true",
        help="CSV on stdout that `analyze --runs-csv` and `backtest --runs-csv` read, with every "
        "tag, param and metric after the analysis columns",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the runs; an unknown or empty experiment is an input error."""
    from analysis.mlflow_runs import runs_frame
    from orchestrator.table import format_table
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_store_exists(uri)
    frame = runs_frame(uri, args.experiment)
    if frame.empty:
        raise InputError(f"experiment {args.experiment!r} at {uri} has no runs")
    if args.csv:
        from analysis.runs_export import export_runs

        export_runs(frame).to_csv(sys.stdout, index=False)
        return 0
    frame = frame.sort_values("run_name", kind="stable")
    epoch = f"metrics.{Metric.EPOCH}"
    if epoch in frame.columns:  # MLflow's step counts from 0; "4 of 4 epochs" reads 4
        frame[epoch] = frame[epoch] + 1
    columns = [c for c in MAIN_COLUMNS if c in frame.columns]
    rows = [_numbers(row) for row in frame[columns].to_dict("records")]
    print(format_table(rows, columns, MAIN_COLUMNS))
    print(f"{len(frame)} runs in experiment {args.experiment!r}")
    return 0


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    """Params are strings in MLflow; show numeric ones compactly (0.40000 -> 0.4)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("params.") and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                out[key] = value
                continue
            out[key] = int(number) if number.is_integer() else number
        else:
            out[key] = value
    return out
