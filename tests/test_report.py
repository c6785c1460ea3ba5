"""The report as a researcher shows it: slide-sized figures (fonts >= 9 pt, legends outside the
panels, point labels that do not collide), a sentence under each figure, provenance (version,
commit, date), the verdict, reference runs linked into the MLflow UI, and the HTML page opened in
a real headless Chromium (marker ``browser``; CI installs Debian's ``chromium``)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import analyze, load_runs_csv
from analysis.figure_style import MIN_FONT_PT, legends_over_axes, small_texts
from analysis.pareto import figure_pareto
from analysis.plots import (
    figure_budget_curve,
    figure_drops,
    figure_fpi,
    figure_miou_flops,
    figure_spectra,
    figure_spectrum,
    figure_training_spectra,
    reference_curves,
)
from analysis.provenance import Link, git_commit, reference_runs, run_url, tool_version
from analysis.report import REPORT_HTML, REPORT_MD, write_outputs
from analysis.sweep import Analysis
from trainables.run_schema import INIT_PROFILE_COLUMN

PAPER_CSV = Path(__file__).parent / "fixtures" / "paper_runs.csv"
LRGS = (17, 9, 5, 3)  # input 65: native 17
BANDS = 33


def quiet_analyze(csv: Path) -> Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze(load_runs_csv(csv))


@pytest.fixture(scope="module")
def paper() -> Analysis:
    """The paper's tables: 24 truncation and 6 annotation groups, R_ce from the CSV."""
    return quiet_analyze(PAPER_CSV)


def spectrum_frame(scale: float) -> pd.DataFrame:
    """A spectrum.csv with initial and final band profiles, negative at a few bands."""
    k = np.arange(BANDS)
    final = 0.5 * (0.6 * scale) ** k
    final[[3, 7]] *= -1
    init = 1.1 * 0.8**k
    init[5] *= -1
    return pd.DataFrame(
        {
            "k": k,
            "band_profile": final,
            INIT_PROFILE_COLUMN: init,
            "r_ce": np.abs(1 - np.cumsum(final) / final.sum()),
            "label_magnitude_norm": 1.0 / (1 + k) ** 2,
            "pred_magnitude_norm": 1.0 / (1 + k) ** (1.5 * scale),
        }
    )


@pytest.fixture(scope="module")
def spectral(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """Two models x two data sets x two prune rates, every reference with a spectrum.csv."""
    root = tmp_path_factory.mktemp("spectral")
    rows = []
    for m, model in enumerate(("dan", "deeplabv3plus")):
        for d, dataset in enumerate(("synthetic-fine", "synthetic-smooth")):
            for prune in (0.0, 0.4):
                name = f"spectrum_{model}_{dataset}_{prune:g}.csv"
                spectrum_frame(1.0 + 0.1 * m + 0.2 * d + prune / 4).to_csv(root / name, index=False)
                for s in LRGS:
                    rows.append(
                        {
                            "model": model,
                            "dataset": dataset,
                            "prune_rate": prune,
                            "lrg": s,
                            "miou": 0.8 - 0.1 * d - 0.012 * (17 - s) - 0.05 * prune,
                            "gflops": (1.0 + 0.05 * s + 0.2 * m) * (1 - prune / 2),
                            "input_size": 65,
                            "spectrum_csv": name if s == 17 else "",
                        }
                    )
    pd.DataFrame(rows).to_csv(root / "runs.csv", index=False)
    return quiet_analyze(root / "runs.csv")


FIGURES: dict[str, Callable[[Analysis], Any]] = {
    "spectra": lambda a: figure_spectra(a.groups),
    "training_spectra": lambda a: figure_training_spectra(a.groups),
    "miou_flops": lambda a: figure_miou_flops(a.rows),
    "fpi": lambda a: figure_fpi(a.rows, a.optimal),
    "drops": lambda a: figure_drops(a.drops, a.estimator, a.r_ce_max),
    "budget_curve": lambda a: figure_budget_curve(a.budget),
    "pareto": lambda a: figure_pareto(a.rows),
}


def built(analysis: Analysis, name: str) -> Any:
    fig = FIGURES[name](analysis)
    assert fig is not None, f"{name}: nothing drawn"
    return fig


@pytest.mark.parametrize("name", sorted(FIGURES))
@pytest.mark.parametrize("which", ["paper", "spectral"])
def test_figures_have_slide_fonts_and_legends_outside(
    name: str, which: str, request: pytest.FixtureRequest
) -> None:
    analysis = request.getfixturevalue(which)
    if which == "paper" and name == "training_spectra":
        assert FIGURES[name](analysis) is None  # a CSV has no spectrum.csv: no figure
        return
    fig = built(analysis, name)
    try:
        assert small_texts(fig) == [], f"{name}: text below {MIN_FONT_PT} pt"
        assert fig.legends, f"{name}: no legend"
        assert legends_over_axes(fig) == [], f"{name}: legend covers a panel"
        renderer = fig.canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        assert legend.x0 >= max(p.x1 for p in panels) - 1  # right of every panel
        assert legend.x1 <= fig.bbox.x1 + 1  # and inside the figure
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_run_spectrum_figure_has_slide_fonts() -> None:
    fig = figure_spectrum(spectrum_frame(1.0))
    assert fig is not None
    assert small_texts(fig) == [] and legends_over_axes(fig) == []


def test_many_groups_get_one_compact_legend(paper: Analysis) -> None:
    """24 truncation groups: one panel per data set, a legend of models and prune rates (2 + 4
    entries and 2 headers) instead of one entry per group."""
    fig = built(paper, "fpi")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [ax.get_title() for ax in fig.axes] == ["cityscapes", "deepglobe", "voc"]
    assert labels[:7] == ["model:", "dan", "deeplabv3plus", "prune rate:", "0", "0.2", "0.4"]
    assert len(labels) < 14


def test_point_labels_are_readable(paper: Analysis) -> None:
    """LRG numbers on the mIoU-GFLOPs panels: 9 pt, inside their panel, none over another."""
    fig = built(paper, "miou_flops")
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) >= 10  # most points keep their label
        assert all(t.get_fontsize() >= MIN_FONT_PT for t in ax.texts)
        frame = ax.get_window_extent(renderer)
        for i, box in enumerate(boxes):
            assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            assert not any(box.overlaps(other) for other in boxes[i + 1 :])
    assert {t.get_text() for ax in fig.axes for t in ax.texts} >= {"17", "129"}


def test_reference_curves_merge_groups_that_share_one(paper: Analysis) -> None:
    """The CSV gives every prune rate the same R_ce curve: one line per (model, data set)."""
    curves = reference_curves(paper.groups)
    assert len(curves) == 6
    assert {c.variant for c in curves} == {"prune 0, 0.2, 0.4, 0.6"}


# --------------------------------------------------------------------- the report's text

VERDICT = pd.DataFrame(
    {
        "model": ["dan", "deeplabv3plus"],
        "dataset": ["voc", "voc"],
        "prune_rate": [0.0, 0.0],
        "optimal_lrg": [65, 33],
        "picked_lrg": [65, 49],
        "exact": [True, False],
        "optimal_fpi": [128.0, 130.0],
        "picked_fpi": [128.0, 132.6],
        "regret": [0.0, 0.02],
        "adaptive_lrg": [65, 33],
        "adaptive_regret": [0.0, 0.0],
        "adaptive_trainings": [2, 3],
    }
)


def test_report_says_where_it_came_from_and_how_to_read_it(paper: Analysis, tmp_path: Path) -> None:
    write_outputs(paper, tmp_path, "runs CSV paper_runs.csv", verdict=VERDICT)
    markdown = (tmp_path / REPORT_MD).read_text()
    page = (tmp_path / REPORT_HTML).read_text()
    assert f"spectral-sweep {tool_version()}, commit {git_commit()}" in markdown
    assert re.search(r"written \d{4}-\d\d-\d\d \d\d:\d\d UTC", markdown)
    assert tool_version() != "unknown"  # installed by the test setup
    # the verdict first, one sentence per strategy
    assert markdown.index("## Verdict") < markdown.index("## Optimal LRG")
    assert "paper (estimate) strategy: exact picks 1/2, mean FPI regret 1.0%, worst 2.0%" in page
    assert (
        "adaptive strategy: exact picks 2/2, mean FPI regret 0.0%, worst 0.0%, 5 trainings" in page
    )
    # a caption under each figure, each with how to read it; R_ce > 1 explained
    assert page.count("<figcaption>") == page.count("<img") == 6
    assert page.count("How to read:") == 6
    # the Pareto front: drawn and listed
    assert "**Figure 5. Pareto front of GFLOPs against mIoU.**" in markdown
    assert "## Pareto front (GFLOPs against mIoU)" in markdown
    assert "single band terms L_ce[k] can be negative" in page
    assert "**Figure 4. Relative mIoU drop against R_ce.**" in markdown
    # the reference run of each group (CSV rows: file and line)
    assert "## Reference runs" in markdown and "| paper_runs.csv:88 |" in markdown
    assert "<a href" not in page  # no MLflow server: nothing to link


def test_without_a_verdict_the_report_has_none(paper: Analysis, tmp_path: Path) -> None:
    write_outputs(paper, tmp_path, "runs CSV")
    assert "Verdict" not in (tmp_path / REPORT_MD).read_text()


def test_reference_runs_link_into_the_mlflow_ui(
    paper: Analysis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs on an MLflow server link to their UI page; the experiment id is asked once per
    run (here answered without a server)."""
    from analysis import provenance

    asked: list[tuple[str, str]] = []

    def ask(self: Any, uri: str, run_id: str) -> str:
        asked.append((uri, run_id))
        return "7"

    monkeypatch.setattr(provenance._ExperimentIds, "_ask", ask)
    paper = copy.deepcopy(paper)  # the module's fixture stays as it is
    server = "http://mlflow.example:5000/"
    for i, group in enumerate(paper.groups):
        assert group.reference is not None
        group.reference = {**group.reference, "tracking_uri": server, "run_id": f"run{i % 24}"}
    table, note = reference_runs(paper.groups)
    assert note == "" and len(asked) == 24  # the 6 annotation references repeat a run id
    first = table["run"].iloc[0]
    assert isinstance(first, Link) and first.text == "run0"
    assert first.url == "http://mlflow.example:5000/#/experiments/7/runs/run0"
    assert run_url(server, "7", "run0") == first.url
    write_outputs(paper, tmp_path, "MLflow")
    page = (tmp_path / REPORT_HTML).read_text()
    assert '<a href="http://mlflow.example:5000/#/experiments/7/runs/run0">run0</a>' in page
    markdown = (tmp_path / REPORT_MD).read_text()
    assert "[run0](http://mlflow.example:5000/#/experiments/7/runs/run0)" in markdown


def test_a_local_store_gets_the_mlflow_ui_command(paper: Analysis, tmp_path: Path) -> None:
    """A store that is not there is not opened (which would create it)."""
    group = copy.deepcopy(next(g for g in paper.groups if g.reference is not None))
    assert group.reference is not None
    missing = f"sqlite:///{tmp_path}/mlflow.db"
    group.reference = {**group.reference, "tracking_uri": missing}
    table, note = reference_runs([group])
    assert table["run"].iloc[0] == group.reference["run_id"]  # no server: the id, unlinked
    assert f"mlflow ui --backend-store-uri {missing} --host 127.0.0.1" in note
    assert list(tmp_path.iterdir()) == []


def test_the_experiment_id_comes_from_the_store(paper: Analysis, tmp_path: Path) -> None:
    """A real (SQLite) store answers the reference run's experiment, named in the note."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("other")
    experiment = client.create_experiment("sweep")
    run_id = client.create_run(experiment).info.run_id
    group = copy.deepcopy(next(g for g in paper.groups if g.reference is not None))
    assert group.reference is not None
    group.reference = {**group.reference, "tracking_uri": uri, "run_id": run_id}
    table, note = reference_runs([group])
    assert table["run"].iloc[0] == run_id
    assert f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/RUN_ID" in note


def test_git_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"


# --------------------------------------------------------------------- a real browser

#: Marks each <img> loaded or not once the page has loaded; records any error on the page.
CHECKER = """<script>
window.__errors = [];
window.addEventListener("error", (e) => {
  window.__errors.push(String(e.message || (e.target && e.target.src) || "error"));
  document.body.dataset.errors = window.__errors.join(" | ");
}, true);
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.dataset.loaded = img.complete && img.naturalWidth > 0 ? "yes" : "no";
  }
  document.body.dataset.checked = String(document.images.length);
});
</script>"""


class Images(HTMLParser):
    """The attributes of every <img> and of <body> in a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary is not None
    return subprocess.run(
        [
            binary,
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.browser
@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="needs the chromium binary (Debian package `chromium`; .ci/run installs it)",
)
def test_report_opens_in_headless_chromium(paper: Analysis, tmp_path: Path) -> None:
    out = tmp_path / "report"
    outputs = write_outputs(paper, out, "runs CSV paper_runs.csv", verdict=VERDICT)
    page = (out / REPORT_HTML).read_text()
    assert "<script" not in page  # the report itself runs no code
    checked = out / "report_checked.html"
    checked.write_text(page.replace("</body>", f"{CHECKER}</body>"), "utf-8")

    dumped = chromium("--dump-dom", checked.as_uri(), profile=tmp_path / "profile")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Images()
    dom.feed(dumped.stdout)
    assert dom.body.get("data-checked") == str(len(outputs.figures)) == "6", dumped.stdout[:500]
    assert [img.get("data-loaded") for img in dom.images] == ["yes"] * 6
    assert all((img.get("alt") or "").startswith("Figure ") for img in dom.images)
    assert "data-errors" not in dom.body, dom.body.get("data-errors")
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    shot = tmp_path / "report.png"
    taken = chromium(
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        "--hide-scrollbars",
        (out / REPORT_HTML).as_uri(),
        profile=tmp_path / "profile-shot",
    )
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        grey = np.asarray(image.convert("L"), dtype=float)
    assert (grey < 200).mean() > 0.01  # text and figures drawn, not a blank page
    console = [line for line in taken.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
