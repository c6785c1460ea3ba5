"""Where a report came from: the tool's version, the git commit, the date, and each group's
reference run (with a link into the MLflow UI when the runs live on an MLflow server).

Read-only: it asks git and MLflow, it writes nothing.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from analysis.groups import Group

PACKAGE = "spectral-sweep"
#: The repository this module is part of (a source checkout; an installed wheel has no .git).
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Link:
    """A table cell shown as ``text`` that links to ``url`` (rendered by ``analysis.report``)."""

    text: str
    url: str

    def __str__(self) -> str:
        return self.text


def tool_version() -> str:
    """The installed ``spectral-sweep`` version, "unknown" when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def git_commit(repo: Path = _REPO) -> str:
    """``git rev-parse --short HEAD`` in ``repo`` (with "+ uncommitted changes" when the
    tracked files differ from it), "unknown" without git or outside a checkout."""
    try:
        head = _git(repo, "rev-parse", "--short", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    try:
        dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = False
    return f"{head} + uncommitted changes" if dirty else head


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()


def report_date(now: dt.datetime | None = None) -> str:
    """The date and time in UTC, ``2025-01-31 14:05 UTC``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def is_server(tracking_uri: str | None) -> bool:
    """An MLflow tracking server (its UI answers at the same address)."""
    return bool(tracking_uri) and str(tracking_uri).startswith(("http://", "https://"))


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run on the server at ``tracking_uri``."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


class _ExperimentIds:
    """Experiment ids of runs, asked once per (tracking URI, run); None where MLflow cannot
    answer (a CSV's row id, a store that is gone)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._ids: dict[tuple[str, str], str | None] = {}

    def __call__(self, tracking_uri: str, run_id: str) -> str | None:
        key = (tracking_uri, run_id)
        if key not in self._ids:
            self._ids[key] = self._ask(tracking_uri, run_id)
        return self._ids[key]

    def _ask(self, tracking_uri: str, run_id: str) -> str | None:
        if not _store_exists(tracking_uri):
            return None  # opening a missing local store would create an empty one
        try:
            if tracking_uri not in self._clients:
                from analysis.mlflow_runs import client_for

                self._clients[tracking_uri] = client_for(tracking_uri)
            return str(self._clients[tracking_uri].get_run(run_id).info.experiment_id)
        except Exception:  # any failure: the report shows the id without a link
            return None


def _store_exists(tracking_uri: str) -> bool:
    """A server (asked as it is), or a local store whose database or folder exists."""
    if is_server(tracking_uri):
        return True
    from urllib.parse import unquote, urlparse

    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
        return bool(path) and Path(path if path.startswith("/") else Path.cwd() / path).is_file()
    if tracking_uri.startswith("file:"):
        return Path(unquote(urlparse(tracking_uri).path)).is_dir()
    return "://" not in tracking_uri and Path(tracking_uri).is_dir()


def reference_runs(groups: list[Group]) -> tuple[pd.DataFrame, str]:
    """One row per group with a reference: ``group, kind, reference (LRG / nu_max), run``
    (the run id; a :class:`Link` into the MLflow UI when the runs are on a server), and a note
    on opening the runs of a local store in the MLflow UI ("" when there is none)."""
    import pandas as pd

    experiment_of = _ExperimentIds()
    records: list[dict[str, Any]] = []
    local: tuple[str, str] | None = None
    for group in groups:
        ref = group.reference
        if ref is None:
            continue
        run_id = str(ref.get("run_id") or "")
        uri = ref.get("tracking_uri")
        uri = uri if isinstance(uri, str) and uri else None
        cell: Any = run_id
        if uri is not None and is_server(uri):
            experiment = experiment_of(uri, run_id)
            if experiment is not None:
                cell = Link(run_id, run_url(uri, experiment, run_id))
        elif uri is not None and local is None:
            local = (uri, run_id)
        where = f"LRG {int(ref['lrg'])}"
        nu = ref.get("annotation_nu_max")
        if nu is not None and nu == nu:  # not NaN: block-wise labels
            where += f", labels at nu_max {int(nu)}"
        records.append({"group": group.label, "kind": group.kind, "reference": where, "run": cell})
    table = pd.DataFrame(records, columns=["group", "kind", "reference", "run"])
    return table, _local_note(local, experiment_of)


def _local_note(local: tuple[str, str] | None, experiment_of: _ExperimentIds) -> str:
    """How to open a local store's runs: ``mlflow ui`` and the page of a run."""
    if local is None:
        return ""
    uri, run_id = local
    experiment = experiment_of(uri, run_id)
    page = (
        run_url("http://127.0.0.1:5000", experiment, "RUN_ID")
        if experiment is not None
        else "its Runs page"
    )
    return (
        f"The runs are in a local store; to open one, start `mlflow ui --backend-store-uri "
        f"{uri} --host 127.0.0.1` and go to {page}."
    )


__all__ = [
    "Link",
    "git_commit",
    "is_server",
    "reference_runs",
    "report_date",
    "run_url",
    "tool_version",
]
