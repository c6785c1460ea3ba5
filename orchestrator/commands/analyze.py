"""``spectral-sweep analyze``: a sweep's runs -> optimal LRG, the mIoU-drop estimator, a report.

Reads an MLflow experiment (``--experiment``) or a runs CSV (``--runs-csv``), writes
``DIR/estimator.json``, ``DIR/optimal_lrg.csv``, ``DIR/report.md`` and ``DIR/report.html``
(plus drops/LODO tables and figures) and ``DIR/optimal_space.yaml`` (each group's optimal
configuration as a space file), prints the optimal-LRG table and the command that reruns the
optimal configurations, and from MLflow logs the outputs as a new run named "analysis" in the
same experiment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.commands import add_tracking_uri
from trainables.errors import InputError

if TYPE_CHECKING:
    from trainables.config import TrialConfig

#: The space file of the optimal configurations, in ``--out``.
OPTIMAL_SPACE = "optimal_space.yaml"


def register(sub: Any) -> None:
    """Add the ``analyze`` parser."""
    p = sub.add_parser(
        "analyze",
        help="optimal LRG, mIoU-drop estimator and report from a sweep's runs",
        description=(
            "Read a sweep's runs (MLflow experiment or CSV), pick the FPI-minimising LRG per "
            "(model, dataset, prune rate), fit the mIoU-drop estimator drop = a*R_ce + b over "
            "R_ce < --r-ce-max, validate it leaving one data set out, and write estimator.json, "
            "optimal_lrg.csv, report.md, report.html and optimal_space.yaml (the optimal "
            "configurations as a space file for `sweep --space-file`) into --out."
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
    from orchestrator.commands import check_output_dir, make_output_dir
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
    outputs = write_outputs(analysis, make_output_dir(out), source)
    space_file = write_optimal_space(analysis, args, out)
    if space_file is not None:
        outputs.files.append(space_file)
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
    if space_file is not None:
        print(f"rerun: {rerun_command(space_file)}")
    if uri is not None and not args.no_log:
        run_id = log_analysis_run(uri, args.experiment, outputs, analysis)
        print(f"logged to MLflow run {run_id} (name 'analysis') in {args.experiment!r}")
    return 0


def rerun_command(space_file: Path) -> str:
    """The command that sweeps a written space file."""
    from orchestrator.commands.plan_outputs import sweep_command

    return sweep_command(space_file)


def write_optimal_space(analysis: Any, args: argparse.Namespace, out: Path) -> Path | None:
    """``out/optimal_space.yaml``: each truncation group's FPI-optimal configuration, with the
    full config of its run when the source has it (MLflow, or a CSV from ``runs --csv``), else
    what the CSV gives (settings it lacks are named on stderr and in the file). None, with a
    warning, when there is nothing to write or the configurations are not valid trials."""
    from search_spaces.export import missing_settings, space_name, space_of_configs, write_space

    if analysis.optimal.empty:
        return None
    run_ids = optimal_run_ids(analysis)
    configs = _source_configs(args, [ids[0] for ids in run_ids])
    trials: list[TrialConfig | dict[str, Any]] = []
    known: set[str] = set()
    partial = 0
    for row, ids in zip(analysis.optimal.to_dict("records"), run_ids, strict=True):
        full = next((configs[i] for i in ids if i in configs), None)
        if full is not None:
            trials.append(_with_lrg(full, int(row["lrg"])))
            continue
        partial += 1
        trial = _known_settings(analysis, row, ids)
        known |= {*trial, "annotation_nu_max"}  # optimal rows are pixel-wise
        trials.append(trial)
    base = Path(args.runs_csv).stem if args.runs_csv else args.experiment
    name = space_name(f"{base}-optimal")
    source = f"experiment {args.experiment!r}" if args.experiment else f"runs CSV {args.runs_csv}"
    path = out / OPTIMAL_SPACE
    comments = [f"the FPI-optimal LRG configuration of each group, from {source}"]
    datasets = [str(d) for d in analysis.optimal["dataset"]]
    missing = missing_settings(sorted(known), datasets) if partial else []
    if missing:
        comments.append(
            f"not in the source ({partial} of {len(trials)} configurations; TrialConfig "
            f"defaults apply): {', '.join(missing)}"
        )
    comments.append(f"rerun: {rerun_command(path)}")
    try:
        space = space_of_configs(name, trials, comments[0], source=str(path))
    except InputError as err:
        print(f"warning: {OPTIMAL_SPACE} not written: {err}", file=sys.stderr)
        return None
    write_space(space, path, comments)
    if missing:
        print(
            f"warning: {OPTIMAL_SPACE}: the source gives {', '.join(sorted(known))} for "
            f"{partial} configuration(s); missing (defaults apply, edit the file): "
            f"{', '.join(missing)}",
            file=sys.stderr,
        )
    return path


def optimal_run_ids(analysis: Any) -> list[tuple[str, ...]]:
    """The run ids behind each row of ``analysis.optimal`` (its prepared row's ``run_ids``)."""
    from analysis.groups import TRUNCATION
    from analysis.runs import is_nan

    optimal = analysis.optimal
    keys = list(optimal.columns[: list(optimal.columns).index("lrg") + 1])
    rows = analysis.rows.loc[analysis.rows["kind"] == TRUNCATION].to_dict("records")
    out = []
    for best in optimal.to_dict("records"):
        match = next(
            (
                r
                for r in rows
                if all(
                    (is_nan(r[k]) and is_nan(best[k])) or r[k] == best[k] for k in keys if k in r
                )
            ),
            None,
        )
        out.append(tuple(match["run_ids"]) if match is not None else ())
    return out


def _source_configs(args: argparse.Namespace, run_ids: list[str]) -> dict[str, TrialConfig]:
    """Full configs of ``run_ids``: from MLflow's params, or a CSV's ``params.*`` columns."""
    if args.runs_csv:
        from analysis.runs_export import csv_configs

        return csv_configs(args.runs_csv)
    from analysis.mlflow_runs import runs_frame
    from analysis.mlflow_trials import run_config

    frame = runs_frame(_tracking_uri(args), args.experiment)
    wanted = set(run_ids)
    out: dict[str, TrialConfig] = {}
    for run in frame.to_dict("records"):
        if run["run_id"] in wanted:
            try:
                out[str(run["run_id"])] = run_config(run)
            except InputError:
                continue
    return out


def _with_lrg(cfg: TrialConfig, lrg: int) -> TrialConfig:
    """``cfg`` at grid ``lrg`` (spelled out), without post-hoc evaluations."""
    import dataclasses

    return dataclasses.replace(cfg, lrg=lrg, eval_lrgs=())


#: Columns of a prepared row that are TrialConfig settings.
_CONTEXT_SETTINGS = ("backbone", "input_size", "decoder_prune_rate", "truncation", "num_classes")


def _known_settings(analysis: Any, row: dict[str, Any], ids: tuple[str, ...]) -> dict[str, Any]:
    """What a CSV without params gives about an optimal configuration."""
    from analysis.runs import is_nan

    prepared = analysis.rows.set_index("run_id", drop=False)
    context = prepared.loc[ids[0]].to_dict() if ids and ids[0] in prepared.index else {}
    out: dict[str, Any] = {
        "model": str(row["model"]),
        "dataset": str(row["dataset"]),
        "prune_rate": float(row["prune_rate"]),
        "lrg": int(row["lrg"]),
    }
    for key in _CONTEXT_SETTINGS:
        value = row.get(key, context.get(key))
        if value is None or is_nan(value):
            continue
        out[key] = int(value) if key in ("input_size", "num_classes") else value
    if "decoder_prune_rate" in out:
        out["decoder_prune_rate"] = float(out["decoder_prune_rate"])
    return out


def _tracking_uri(args: argparse.Namespace) -> str:
    """The URI to read: the flag, else the environment, else ./mlflow.db (which must exist)."""
    from orchestrator.uris import check_store_exists, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_store_exists(uri)
    return uri
