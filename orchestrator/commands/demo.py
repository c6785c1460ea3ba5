"""``spectral-sweep demo``: the whole story on this machine, nothing to set up, ending in a verdict.

Embedded defaults: local Ray with every CPU, an MLflow SQLite file ``mlflow.db`` and Tune
results in ``spectral_sweep_runs/`` under ``--dir`` (the working directory), synthetic data.

1. the exhaustive sweep of the ``demo`` space (every trial trained), experiment ``demo``;
2. the estimate strategy on the same space (one reference per group trained, the rest predicted
   with the paper's estimator), experiment ``demo-estimate``;
3. the analysis of the exhaustive sweep: optimal LRGs, the fitted estimator, the report in
   ``demo-report/`` (also logged to MLflow);
4. the verdict: trainings run by each strategy, the estimate's picks against the exhaustive
   optimum (exact picks, FPI regret), and where to look next.

Running it again resumes (or reuses) both sweeps and logs nothing twice.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.settings import DEFAULT_STORAGE
from trainables.run_schema import Strategy

DEMO_SPACE = "demo"
ESTIMATE_SUFFIX = "-estimate"
REPORT_SUFFIX = "-report"
VERDICT_CSV = "verdict.csv"


def register(sub: Any) -> None:
    """Add the ``demo`` parser."""
    p = sub.add_parser(
        "demo",
        help="the demo on synthetic data: exhaustive sweep, estimate strategy, report, verdict",
        description=(
            "Run the `demo` search space (both models, both synthetic data sets, LRG sizes, "
            "prune rates and annotation limits) exhaustively and with the estimate strategy "
            "on an embedded local Ray, tracked in an MLflow SQLite file; analyse the sweep, "
            "write the report and print how the estimate's picks compare. Re-running resumes."
        ),
    )
    p.add_argument("--dir", default=".", help="where mlflow.db, the runs and the report go")
    p.add_argument(
        "--space",
        default=DEMO_SPACE,
        help="built-in space to run (default: demo; `smoke` runs the same story in a minute)",
    )
    p.add_argument("--name", default=None, help="sweep / MLflow experiment (default: the space)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials running at once")
    p.add_argument(
        "--confirm", action="store_true", help="also train the estimate strategy's picks"
    )
    p.add_argument("--quiet", action="store_true", help="no progress table")
    p.set_defaults(func=run)


def demo_locations(directory: Path) -> tuple[Path, str]:
    """``(storage path, tracking URI)`` of the demo under ``directory``."""
    from orchestrator.uris import default_tracking_uri

    return directory / DEFAULT_STORAGE, default_tracking_uri(directory)


def demo_settings(directory: Path, name: str, space_name: str, **options: Any) -> Any:
    """Settings of a demo sweep of a built-in space (resumed when it already exists)."""
    from orchestrator.settings import SweepSettings
    from search_spaces import get_space

    storage, uri = demo_locations(directory)
    space = get_space(space_name).to_dict()
    return SweepSettings(space=space, name=name, storage=str(storage), tracking_uri=uri, **options)


def _preflight(settings: Any) -> bool:
    """The sweep command's checks on a demo sweep; whether it resumes one that exists."""
    from orchestrator.preflight import check_new_sweep, check_resumed_sweep, sweep_exists

    found = sweep_exists(settings.experiment_path)
    if found:
        check_resumed_sweep(settings)
        print(f"resuming sweep {settings.name!r} in {settings.experiment_path}")
    else:
        check_new_sweep(settings)
    return found


def run_exhaustive(
    directory: Path,
    *,
    name: str = DEMO_SPACE,
    space: str = DEMO_SPACE,
    max_concurrent: int | None = None,
    verbose: int = 1,
) -> Any:
    """Run (or resume) every trial of ``space`` as the sweep ``name``; its outcome."""
    from orchestrator.tune import run_sweep

    options = {"max_concurrent": max_concurrent, "verbose": verbose}
    settings = demo_settings(directory, name, space, **options)
    outcome = run_sweep(settings, resume=_preflight(settings))
    print(
        f"exhaustive sweep {name!r}: {outcome.finished} finished, {outcome.errored} failed, "
        f"{outcome.unfinished} unfinished of {outcome.total} trials"
    )
    return outcome


def run_estimate_strategy(
    directory: Path,
    *,
    name: str,
    space: str = DEMO_SPACE,
    confirm: bool = False,
    max_concurrent: int | None = None,
    verbose: int = 1,
) -> Any:
    """Run (or resume) the estimate strategy with the paper's estimator; its outcome."""
    from orchestrator.strategy import run_estimate

    settings = demo_settings(
        directory,
        name,
        space,
        strategy=Strategy.ESTIMATE,
        estimator="paper",
        confirm=confirm,
        max_concurrent=max_concurrent,
        verbose=verbose,
    )
    outcome = run_estimate(settings, resume=_preflight(settings))
    print(
        f"estimate strategy {name!r}: {outcome.trainings} trainings, "
        f"{len(outcome.plans)} groups planned, {len(outcome.skipped)} without a reference"
    )
    return outcome


@dataclass
class DemoAnalysis:
    """The exhaustive sweep's analysis and where its report went."""

    analysis: Any  # analysis.Analysis
    report: Path  # report.html
    directory: Path


def analyze_sweep(directory: Path, experiment: str) -> DemoAnalysis:
    """Analyse the exhaustive sweep (the report is written with the verdict: ``write_report``)."""
    import warnings

    from analysis import analyze, load_runs_mlflow
    from analysis.report import REPORT_HTML
    from analysis.runs import AnalysisWarning

    _, uri = demo_locations(directory)
    out = directory / f"{experiment}{REPORT_SUFFIX}"
    source = f"MLflow experiment {experiment!r} at {uri}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        analysis = analyze(load_runs_mlflow(uri, experiment), source=source)
    analysis.notes = list(dict.fromkeys(str(w.message) for w in caught))
    return DemoAnalysis(analysis, out / REPORT_HTML, out)


def write_report(directory: Path, experiment: str, result: DemoAnalysis, verdict: Any) -> None:
    """The report with the verdict in it; logged to MLflow once (a rerun logs nothing twice).
    An analysis run left unfinished (a driver that died while logging it) is deleted and the
    analysis logged anew."""
    from analysis.mlflow_runs import runs_frame
    from analysis.report import log_analysis_run, write_outputs
    from orchestrator import store
    from trainables.run_schema import Role, Tag

    _, uri = demo_locations(directory)
    source = f"MLflow experiment {experiment!r} at {uri}"
    outputs = write_outputs(result.analysis, result.directory, source, verdict=verdict)
    runs = runs_frame(uri, experiment)
    roles = runs.get(f"tags.{Tag.ROLE}")
    analyses = runs.loc[roles == Role.ANALYSIS] if roles is not None else None
    if analyses is not None and (analyses["status"] == "FINISHED").any():
        return
    client = store.make_client(uri)
    for run_id in [] if analyses is None else list(analyses["run_id"]):
        store.retry_locked(functools.partial(client.delete_run, run_id))
    log_analysis_run(uri, experiment, outputs, result.analysis)


def print_verdict(exhaustive: Any, estimate: Any, result: DemoAnalysis) -> Any:
    """Trainings and picks of each strategy against the exhaustive optimum, the fitted
    estimator, the report's path. ``paper`` is the live estimate strategy; ``adaptive`` is
    replayed on the exhaustive sweep (``analysis.backtest``: trials are deterministic, so a live
    run would train the same configurations and measure the same mIoU)."""
    from analysis.backtest import Sweep, backtest
    from analysis.estimator import PAPER_ESTIMATOR
    from analysis.strategy import verdict
    from orchestrator.commands.backtest import describe
    from orchestrator.table import format_table

    table = verdict(estimate.plans, result.analysis.rows)
    sweep = Sweep.from_groups(result.analysis.groups, result.analysis.drops)
    adaptive = backtest(sweep, "adaptive", PAPER_ESTIMATOR)
    table = _with_adaptive(table, adaptive)
    result.directory.mkdir(parents=True, exist_ok=True)
    table.to_csv(result.directory / VERDICT_CSV, index=False)
    print()
    print("== verdict ==")
    total = exhaustive.total
    print(
        f"trainings: exhaustive {total}, paper {estimate.trainings} "
        f"({_share(estimate.trainings, total)}), adaptive {adaptive.trainings} "
        f"({_share(adaptive.trainings, total)}) of the exhaustive sweep"
    )
    print("picked LRG of each strategy (paper's estimator) against the exhaustive optimum:")
    print(format_table(table.to_dict("records"), list(table.columns)))
    if not table.empty:
        regret = table["regret"].dropna()
        worst = f", worst {regret.max():.1%}" if len(regret) else ""
        print(
            f"paper (live, experiment {estimate.references.name!r}): exact picks "
            f"{int(table['exact'].sum())}/{len(table)}; mean FPI regret {regret.mean():.1%}{worst}"
        )
    print(f"adaptive (replayed on the exhaustive sweep): {describe(adaptive.summary())}")
    print(f"labels only (no training): {_labels_only(exhaustive, result)}")
    fitted = result.analysis.estimator
    print(f"estimator fitted on the exhaustive sweep: {fitted.describe() if fitted else 'none'}")
    print(f"paper's estimator:                        {PAPER_ESTIMATOR.describe()}")
    lodo = result.analysis.lodo
    if not lodo.empty:
        print(
            f"leave-one-dataset-out on the exhaustive sweep: {int(lodo['exact'].sum())}/"
            f"{len(lodo)} exact, mean FPI regret {float(lodo['regret'].mean()):.1%}"
        )
    print(f"report: {result.report}")
    return table


def _labels_only(exhaustive: Any, result: DemoAnalysis) -> str:
    """The label-only prediction (label energy above each band through the paper's line)
    replayed on the exhaustive sweep: exact picks, regret, Spearman against measured drops."""
    from analysis.estimator import PAPER_ESTIMATOR
    from analysis.labels_only import label_curves
    from analysis.labels_only_backtest import labels_only_backtest
    from orchestrator.settings import load_settings

    space = load_settings(exhaustive.path).search_space()
    curves = {}
    for cfg in space.trials():
        if cfg.dataset not in curves:  # the evaluation labels the trials were scored on
            options = {**cfg.extra, "length": cfg.eval_length} if cfg.eval_length else cfg.extra
            read = label_curves(
                cfg.dataset,
                data_root=cfg.data_root,
                input_size=cfg.input_size,
                num_classes=cfg.num_classes,
                options=options,
                seed=cfg.seed,
            )
            curves[cfg.dataset] = read.curve("energy_above")
    summary = labels_only_backtest(result.analysis.rows, curves, PAPER_ESTIMATOR).summary
    return (
        f"exact picks {summary['exact_picks']}/{summary['groups']}; mean FPI regret "
        f"{summary['mean_regret']:.1%}, worst {summary['max_regret']:.1%}; Spearman against the "
        f"measured drops {_rho(summary['mean_spearman'])} within groups, "
        f"{_rho(summary['pooled_spearman'])} pooled (label energy above each band, paper's line)"
    )


def _rho(value: float) -> str:
    """A Spearman coefficient, or "-" where too few points gave none (NaN)."""
    return f"{value:.2f}" if value == value else "-"


def _share(part: int, total: int) -> str:
    return f"{part / total:.0%}" if total else "-"


def _with_adaptive(table: Any, adaptive: Any) -> Any:
    """The verdict table with the adaptive strategy's pick, regret and trainings per group."""
    from analysis.groups import group_label

    picks = {g["group"]: g for g in adaptive.per_group}
    rows = []
    for row in table.to_dict("records"):
        key = {k: row[k] for k in ("model", "dataset", "prune_rate")}
        mine = picks.get(group_label(key, "truncation"), {})
        rows.append(
            {
                **row,
                "adaptive_lrg": mine.get("picked"),
                "adaptive_regret": mine.get("regret"),
                "adaptive_trainings": mine.get("trainings"),
            }
        )
    import pandas as pd

    return pd.DataFrame(rows, columns=[*table.columns, *ADAPTIVE_COLUMNS])


ADAPTIVE_COLUMNS = ("adaptive_lrg", "adaptive_regret", "adaptive_trainings")


def print_next_steps(directory: Path, experiments: list[str]) -> None:
    """Where the results are and how to look at them."""
    from orchestrator.uris import ui_command

    _, uri = demo_locations(directory)
    print(f"MLflow experiments {', '.join(map(repr, experiments))} in {uri}")
    print(f"list the runs:  spectral-sweep runs --experiment {experiments[0]} --tracking-uri {uri}")
    print(f"open the UI:    {ui_command(uri)}  (then http://127.0.0.1:5000)")


def check_generated(space: Any) -> None:
    """The demo runs on generated data (it has no ``--data-root``): a space that reads a data
    set from disk is refused before anything is made, pointing at ``sweep``."""
    from trainables.dataset_registry import dataset_spec
    from trainables.errors import InputError

    real = sorted({t.dataset for t in space.trials() if dataset_spec(t.dataset).needs_root})
    if real:
        roots = " ".join(f"--data-root {d}=PATH" for d in real)
        raise InputError(
            f"the demo runs on generated data, and space {space.name!r} reads {', '.join(real)} "
            f"from disk; run it with `spectral-sweep sweep --space {space.name} {roots}`"
        )


def run(args: argparse.Namespace) -> int:
    """The demo: both strategies, the analysis, the verdict and the pointers to the results."""
    from search_spaces import get_space
    from trainables.errors import InputError

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise InputError(f"--max-concurrent {args.max_concurrent} must be >= 1")
    from orchestrator.commands import check_output_dir, make_output_dir
    from orchestrator.preflight import check_name

    check_generated(get_space(args.space))  # an unknown name fails here, listing the spaces
    if args.name is not None and not args.name.strip():
        raise InputError("--name '' is empty; give a name, or leave the flag out for the space's")
    name = args.name or args.space
    check_name(name)  # a sweep, a directory and an experiment: no '/', no '..'
    directory = make_output_dir(check_output_dir(args.dir, "--dir").resolve(), "--dir")
    began = time.perf_counter()
    verbose = 0 if args.quiet else 1
    options = {"space": args.space, "max_concurrent": args.max_concurrent, "verbose": verbose}
    again = f"spectral-sweep demo --dir {directory} --space {args.space} --name {name}"
    exhaustive = run_exhaustive(directory, name=name, **options)
    if exhaustive.unfinished:
        print(f"demo interrupted; continue it with: {again}", file=sys.stderr)
        return 130
    estimate_name = name + ESTIMATE_SUFFIX
    estimate = run_estimate_strategy(directory, name=estimate_name, confirm=args.confirm, **options)
    if estimate.interrupted:
        print(f"demo interrupted; continue it with: {again}", file=sys.stderr)
        return 130
    from orchestrator.tune import stop_local_ray

    stop_local_ray()  # no more trials
    result = analyze_sweep(directory, name)
    verdict = print_verdict(exhaustive, estimate, result)
    write_report(directory, name, result, verdict)
    print(f"demo finished in {time.perf_counter() - began:.0f} s")
    print_next_steps(directory, [name, estimate_name])
    failed = exhaustive.errored + estimate.references.errored
    lost = exhaustive.tracking_lost + estimate.references.tracking_lost
    if estimate.confirmations is not None:
        failed += estimate.confirmations.errored
        lost += estimate.confirmations.tracking_lost
    if lost:
        print(f"{len(lost)} tracking write(s) could not be made; run the demo again to repair")
    return 1 if failed or lost else 0
