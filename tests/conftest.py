"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.mlflow_schema import SCHEMA_FOLDER
from trainables.disk_cache import CACHE_ENV

#: Tests never read or write the user's cache (trainables.disk_cache: FLOPs counts, init band
#: profiles): one folder for the session (inherited by subprocesses and Ray workers), a fresh
#: one per test below; removed when the session ends.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="spectral-sweep-test-cache-"))
os.environ[CACHE_ENV] = str(SESSION_CACHE)
#: The cached empty MLflow schema (analysis.mlflow_schema) is one per session: it depends on
#: the installed versions only (test_mlflow_schema builds its own).
SESSION_SCHEMA = SESSION_CACHE / SCHEMA_FOLDER
SESSION_SCHEMA.mkdir()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's cache folder goes with the session (pytest keeps only ``tmp_path``s)."""
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_flops_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test starts with an empty disk cache (and its processes share it), but for the
    session's MLflow schema; outside the test's ``tmp_path``, which stays empty."""
    folder = tmp_path_factory.mktemp("disk-cache")
    (folder / SCHEMA_FOLDER).symlink_to(SESSION_SCHEMA, target_is_directory=True)
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


#: The paper's results as a runs table (tests/fixtures/README.md).
PAPER_RUNS_CSV = Path(__file__).parent / "fixtures" / "paper_runs.csv"


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """One local Ray (2 CPUs, no dashboard) shared by the tests of a module, shut down after."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread (model tests are timed and compared across runs), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def paper_runs_csv() -> Path:
    """The shipped CSV of the paper's Tables 1, 2, 3a and 4."""
    return PAPER_RUNS_CSV
