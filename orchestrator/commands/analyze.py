"""``spectral-sweep analyze``: a sweep's runs -> optimal LRG, the mIoU-drop estimator, a report.

Reads an MLflow experiment (``--experiment``) or a runs CSV (``--runs-csv``), writes
``DIR/estimator.json``, ``DIR/optimal_lrg.csv``, ``DIR/report.md`` and ``DIR/report.html``
(plus drops/LODO tables and figures), prints the optimal-LRG table, and from MLflow logs the
outputs as a new run named "analysis" in the same experiment.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from orchestrator.commands import add_tracking_uri
from trainables.errors import InputError


def register(sub: Any) -> None:
    """Add the ``analyze`` parser."""
    p = sub.add_parser(
        "analyze",
        help="optimal LRG, mIoU-drop estimator and report from a sweep's runs",
        description=(
            "Read a sweep's runs (MLflow experiment or CSV), pick the FPI-minimising LRG per "
            "(model, dataset, prune rate), fit the mIoU-drop estimator drop = a*R_ce + b over "
            "R_ce < --r-ce-max, validate it leaving one data set out, and write estimator.json, "
            "optimal_lrg.csv, report.md and report.html into --out."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", help="MLflow experiment (= sweep) name")
    source.add_argument(
        "--runs-csv",
        metavar="FILE",
        help="runs table: model,dataset,prune_rate,lrg,miou,gflops[,annotation_nu_max,r_ce,seed]",
    )
    add_tracking_uri(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument(
        "--r-ce-max",
        type=float,
        default=0.2,
        metavar="X",
        help="fit the estimator on points with R_ce < X (default: 0.2, the paper's)",
    )
    p.add_argument(
        "--no-log",
        action="store_true",
        help="with --experiment: do not log the analysis as a run in the experiment",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load runs, analyse, write the outputs, print the optimal-LRG table."""
    import warnings

    from analysis.mlflow_trials import load_runs_mlflow
    from analysis.report import log_analysis_run, write_outputs
    from analysis.runs import AnalysisWarning, load_runs_csv
    from analysis.sweep import analyze
    from orchestrator.commands import check_output_dir
    from orchestrator.table import format_table

    if args.runs_csv and args.tracking_uri:
        raise InputError("--tracking-uri goes with --experiment, not with --runs-csv")
    out = check_output_dir(args.out)
    uri = _tracking_uri(args) if args.experiment else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        if uri is not None:
            runs = load_runs_mlflow(uri, args.experiment)
            source = f"MLflow experiment {args.experiment!r} at {uri}"
        else:
            runs = load_runs_csv(args.runs_csv)
            source = f"runs CSV {args.runs_csv}"
        analysis = analyze(runs, r_ce_max=args.r_ce_max, source=source)
    notes = [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]
    analysis.notes = list(dict.fromkeys(notes))  # loading + analysis warnings, once each
    for note in analysis.notes:
        print(f"warning: {note}", file=sys.stderr)
    outputs = write_outputs(analysis, out, source)
    print(format_table(analysis.optimal.to_dict("records"), list(analysis.optimal.columns)))
    print()
    if analysis.estimator is not None:
        print(f"estimator: {analysis.estimator.describe()}")
    if not analysis.lodo.empty:
        lodo = analysis.lodo
        print(
            f"leave-one-dataset-out: {int(lodo['exact'].sum())}/{len(lodo)} exact, "
            f"mean FPI regret {float(lodo['regret'].mean()):.2%}"
        )
    print(f"wrote {', '.join(p.name for p in outputs.files)} to {outputs.directory}")
    if uri is not None and not args.no_log:
        run_id = log_analysis_run(uri, args.experiment, outputs, analysis)
        print(f"logged to MLflow run {run_id} (name 'analysis') in {args.experiment!r}")
    return 0


def _tracking_uri(args: argparse.Namespace) -> str:
    """The URI to read: the flag, else the environment, else ./mlflow.db (which must exist)."""
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_store_exists(uri)
    return uri
