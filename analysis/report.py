"""Write what ``spectral-sweep analyze`` produces, and log it to MLflow.

``DIR/estimator.json``, ``DIR/optimal_lrg.csv``, ``DIR/drops.csv``, ``DIR/lodo.csv``,
``DIR/figures/*.png`` and the report twice: ``DIR/report.md`` (figures by relative path) and
``DIR/report.html`` (self-contained, figures embedded as base64 PNG). Both are rendered from one
list of blocks so they say the same thing: the tool's version, git commit and date, the strategy
verdict when one is given, the optimal LRGs, the estimator, the figures (each with a sentence on
how to read it), the backtest budget curve, leave-one-dataset-out validation, each group's
reference run (linked into the MLflow UI when the runs are on a server) and the drops.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.estimator import PAPER_ESTIMATOR
from analysis.mlflow_runs import client_for, experiment_id
from analysis.pareto import front_table, pareto_front, plot_pareto
from analysis.plots import (
    plot_budget_curve,
    plot_drops,
    plot_fpi,
    plot_miou_flops,
    plot_spectra,
    plot_training_spectra,
)
from analysis.provenance import Link, git_commit, reference_runs, report_date, tool_version
from analysis.report_text import FIGURE_TITLES, figure_captions, verdict_summary
from trainables.run_schema import R_CE_MAX_PARAM, Artifact, Metric, MlflowTag, Role, Tag

if TYPE_CHECKING:
    import pandas as pd

    from analysis.sweep import Analysis

ESTIMATOR_JSON = Artifact.ESTIMATOR_JSON
OPTIMAL_CSV = Artifact.OPTIMAL_LRG_CSV
DROPS_CSV = Artifact.DROPS_CSV
LODO_CSV = Artifact.LODO_CSV
BUDGET_CSV = Artifact.BUDGET_CURVE_CSV
REPORT_MD = Artifact.REPORT_MD
REPORT_HTML = Artifact.REPORT_HTML
FIGURES = Artifact.FIGURES_DIR
#: Tags of the analysis run logged next to the trial runs.
ANALYSIS_RUN_NAME = "analysis"
ANALYSIS_TAGS = {Tag.ROLE: Role.ANALYSIS}

#: Drop-table columns shown in the report.
_DROP_COLUMNS = ("group", "lrg", "nu_max", "miou", "drop", "r_ce", "in_fit", "n_runs")


@dataclass
class Outputs:
    """Paths of what :func:`write_outputs` wrote."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    estimator: Path | None = None


# --------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """One piece of the report: a heading, a paragraph, a table or a figure."""

    kind: str  # "h1", "h2", "p", "table", "figure", "list"
    text: str = ""
    table: pd.DataFrame | None = None
    path: Path | None = None  # figure file
    items: tuple[str, ...] = ()
    title: str = ""  # figure: its short title (alt text, caption's lead)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Link):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    if hasattr(value, "item"):
        return _fmt(value.item())
    return str(value)


def report_blocks(
    analysis: Analysis,
    source: str,
    figures: Sequence[Path],
    verdict: pd.DataFrame | None = None,
) -> list[Block]:
    """The report's content in order. ``verdict``: each strategy's picks against the
    exhaustive optimum (``analysis.strategy.verdict``, the demo's ``verdict.csv``), shown first
    when given."""
    rows, est = analysis.rows, analysis.estimator
    blocks = [
        Block("h1", "spectral-sweep analysis"),
        Block(
            "p",
            f"spectral-sweep {tool_version()}, commit {git_commit()}, written {report_date()}.",
        ),
        Block(
            "p",
            f"Source: {source}. {int(rows['n_runs'].sum())} run(s), {len(rows)} configuration(s), "
            f"{len(analysis.groups)} group(s). FPI = GFLOPs / mIoU; the optimal LRG minimises FPI "
            "within a (model, dataset, prune rate) group.",
        ),
    ]
    if verdict is not None:
        blocks += _verdict_blocks(verdict)
    blocks += [Block("h2", "Optimal LRG"), Block("table", table=analysis.optimal)]
    blocks.append(Block("h2", "mIoU-drop estimator"))
    if est is not None:
        blocks.append(Block("p", f"Fitted: {est.describe()}."))
    else:
        blocks.append(Block("p", "No estimator fitted (too few points below the R_ce bound)."))
    blocks.append(Block("p", f"Paper: {PAPER_ESTIMATOR.describe()}."))
    with_spectra = any(g.spectrum is not None for g in analysis.groups)
    captions = figure_captions(analysis, with_spectra)
    blocks.append(Block("h2", "Figures"))
    for number, path in enumerate(figures, 1):
        title = f"Figure {number}. {FIGURE_TITLES.get(path.name, path.stem)}."
        caption = captions.get(path.name, "")
        blocks.append(Block("figure", caption, path=path, title=title))
    front = pareto_front(rows)
    if len(front):
        blocks.append(Block("h2", "Pareto front (GFLOPs against mIoU)"))
        blocks.append(Block("table", table=front_table(front)))
    if analysis.budget is not None and not analysis.budget.empty:
        from analysis.budget import budget_summary

        blocks.append(Block("h2", "Backtest: regret against trainings (adaptive strategy)"))
        blocks.append(Block("table", table=budget_summary(analysis.budget)))
    blocks.append(Block("h2", "Leave-one-dataset-out validation"))
    if analysis.lodo.empty:
        blocks.append(Block("p", "Needs runs of at least two data sets with references."))
    else:
        exact = int(analysis.lodo["exact"].sum())
        blocks.append(
            Block(
                "p",
                f"Fit on the other data sets, pick the LRG by predicted FPI: {exact} of "
                f"{len(analysis.lodo)} group(s) exact, mean FPI regret "
                f"{float(analysis.lodo['regret'].mean()):.2%}.",
            )
        )
        blocks.append(Block("table", table=analysis.lodo))
    references, note = reference_runs(analysis.groups)
    if not references.empty:
        blocks.append(Block("h2", "Reference runs"))
        blocks.append(
            Block(
                "p",
                "The run each group's drops and R_ce curve are measured against: the native "
                "grid with pixel-wise labels." + (f" {note}" if note else ""),
            )
        )
        blocks.append(Block("table", table=references))
    if not analysis.drops.empty:
        blocks.append(Block("h2", "Relative drops"))
        columns = [c for c in _DROP_COLUMNS if c in analysis.drops]
        blocks.append(Block("table", table=analysis.drops[columns]))
    curves = [
        f"{g.label}: {g.curve_source or 'none'}" for g in analysis.groups if g.reference is not None
    ]
    if curves:
        blocks += [Block("h2", "R_ce curves used"), Block("list", items=tuple(curves))]
    if analysis.notes:
        blocks += [Block("h2", "Notes"), Block("list", items=tuple(analysis.notes))]
    return blocks


def _verdict_blocks(verdict: pd.DataFrame) -> list[Block]:
    """The strategies against the exhaustive optimum: one sentence per strategy, the table."""
    blocks = [Block("h2", "Verdict: strategies against the exhaustive sweep")]
    if verdict.empty:
        return [*blocks, Block("p", "No truncation group to compare.")]
    return [*blocks, Block("p", verdict_summary(verdict)), Block("table", table=verdict)]


def render_markdown(blocks: Sequence[Block], directory: Path) -> str:
    """Markdown; figures by path relative to ``directory``."""
    out: list[str] = []
    for block in blocks:
        if block.kind == "h1":
            out.append(f"# {block.text}")
        elif block.kind == "h2":
            out.append(f"## {block.text}")
        elif block.kind == "p":
            out.append(block.text)
        elif block.kind == "list":
            out.append("\n".join(f"- {item}" for item in block.items))
        elif block.kind == "figure" and block.path is not None:
            rel = block.path.relative_to(directory).as_posix()
            out.append(f"![{block.title}]({rel})\n\n**{block.title}** {block.text}")
        elif block.kind == "table" and block.table is not None:
            out.append(_markdown_table(block.table))
    return "\n\n".join(out) + "\n"


def _markdown_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "(none)"
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = [
        "| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in table.itertuples(False)
    ]
    return "\n".join([header, rule, *body])


def _markdown_cell(value: Any) -> str:
    text = _fmt(value).replace("|", "\\|")
    return f"[{text}]({value.url})" if isinstance(value, Link) else text


def _html_cell(value: Any) -> str:
    text = html.escape(_fmt(value))
    if isinstance(value, Link):
        return f'<a href="{html.escape(value.url, quote=True)}">{text}</a>'
    return text


def _inline(text: str) -> str:
    """Escaped text with `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_CSS = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "th{background:#f0f0f0}img{max-width:100%}figure{margin:1.5em 0}"
    "figcaption{font-size:0.95em;max-width:60em;line-height:1.4}code{background:#f4f4f4}"
)


def render_html(blocks: Sequence[Block]) -> str:
    """A self-contained HTML page; figures embedded as base64 PNG."""
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>spectral-sweep analysis</title>',
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        text = html.escape(block.text)
        if block.kind in ("h1", "h2"):
            parts.append(f"<{block.kind}>{text}</{block.kind}>")
        elif block.kind == "p":
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif block.kind == "list":
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
            parts.append(f"<ul>{items}</ul>")
        elif block.kind == "figure" and block.path is not None:
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(block.title)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption><b>{html.escape(block.title)}</b> {text}</figcaption></figure>"
            )
        elif block.kind == "table" and block.table is not None:
            parts.append(_html_table(block.table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_html_cell(v)}</td>" for v in row) + "</tr>"
        for row in table.itertuples(False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------- writing


def write_outputs(
    analysis: Analysis,
    directory: str | Path,
    source: str,
    verdict: pd.DataFrame | None = None,
) -> Outputs:
    """Write tables, figures, estimator and both reports into ``directory`` (created);
    ``verdict`` (the strategies against the exhaustive sweep) goes first in the report."""
    directory = Path(directory)
    figures_dir = directory / FIGURES
    figures_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(directory)
    if analysis.estimator is not None:
        outputs.estimator = analysis.estimator.to_json(directory / ESTIMATOR_JSON)
        outputs.files.append(outputs.estimator)
    analysis.optimal.to_csv(directory / OPTIMAL_CSV, index=False)
    outputs.files.append(directory / OPTIMAL_CSV)
    if not analysis.drops.empty:
        columns = [c for c in analysis.drops.columns if c not in ("run_ids", "spectrum_uris")]
        analysis.drops[columns].to_csv(directory / DROPS_CSV, index=False)
        outputs.files.append(directory / DROPS_CSV)
    if not analysis.lodo.empty:
        analysis.lodo.to_csv(directory / LODO_CSV, index=False)
        outputs.files.append(directory / LODO_CSV)
    drawn = [
        plot_spectra(analysis.groups, figures_dir / "spectra.png"),
        plot_training_spectra(analysis.groups, figures_dir / "training_spectra.png"),
        plot_miou_flops(analysis.rows, figures_dir / "miou_flops.png"),
        plot_fpi(analysis.rows, analysis.optimal, figures_dir / "fpi.png"),
        plot_drops(
            analysis.drops, analysis.estimator, analysis.r_ce_max, figures_dir / "drops.png"
        ),
        plot_pareto(analysis.rows, figures_dir / "pareto.png"),
    ]
    if analysis.budget is not None:
        drawn.append(plot_budget_curve(analysis.budget, figures_dir / "budget_curve.png"))
        analysis.budget.to_csv(directory / BUDGET_CSV, index=False)
        outputs.files.append(directory / BUDGET_CSV)
    outputs.figures = [p for p in drawn if p is not None]
    blocks = report_blocks(analysis, source, outputs.figures, verdict)
    (directory / REPORT_MD).write_text(render_markdown(blocks, directory), "utf-8")
    (directory / REPORT_HTML).write_text(render_html(blocks), "utf-8")
    outputs.files += [directory / REPORT_MD, directory / REPORT_HTML]
    return outputs


def log_analysis_run(
    tracking_uri: str, experiment: str, outputs: Outputs, analysis: Analysis
) -> str:
    """Log the outputs as a new run named "analysis" (tag ``spectral_sweep.role=analysis``) in
    the sweep's experiment, nested under the sweep's run when it has one; the trial runs are not
    touched. Returns the new run's id."""
    client = client_for(tracking_uri)
    exp_id = experiment_id(client, tracking_uri, experiment)
    tags = {**ANALYSIS_TAGS, Tag.SWEEP: experiment}
    parents = client.search_runs(
        [exp_id], filter_string=f"tags.`{Tag.ROLE}` = '{Role.SWEEP}'", max_results=1
    )
    if parents:
        tags[MlflowTag.PARENT_RUN_ID] = parents[0].info.run_id
    run = client.create_run(exp_id, run_name=ANALYSIS_RUN_NAME, tags=tags)
    run_id = run.info.run_id
    try:
        client.log_param(run_id, R_CE_MAX_PARAM, analysis.r_ce_max)
        est = analysis.estimator
        if est is not None:
            for name, value in (
                (Metric.ESTIMATOR_SLOPE, est.slope),
                (Metric.ESTIMATOR_INTERCEPT, est.intercept),
                (Metric.ESTIMATOR_R2, est.r2),
                (Metric.ESTIMATOR_N, float(est.n)),
            ):
                if math.isfinite(value):
                    client.log_metric(run_id, name, value)
        if not analysis.lodo.empty:
            client.log_metric(
                run_id, Metric.LODO_EXACT_FRACTION, float(analysis.lodo["exact"].mean())
            )
            client.log_metric(
                run_id, Metric.LODO_MEAN_REGRET, float(analysis.lodo["regret"].mean())
            )
        for path in outputs.files:
            client.log_artifact(run_id, str(path))
        if outputs.figures:
            client.log_artifacts(run_id, str(outputs.directory / FIGURES), FIGURES)
    except BaseException as err:  # Ctrl-C too: the run says it did not finish
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        client.set_terminated(run_id, status=status)
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id
