"""A new SQLite store seeded from the cached empty schema is the store MLflow itself builds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from analysis.mlflow_runs import client_for
from analysis.mlflow_schema import SCHEMA_FOLDER, seed_store
from trainables.disk_cache import CACHE_ENV


@pytest.fixture()
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder without the session's schema: this module builds its own."""
    folder = tmp_path / "own-cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


#: How a table constraint's line starts in SQLite's stored ``CREATE TABLE``.
CONSTRAINT_LINES = ("CONSTRAINT", "CHECK", "FOREIGN KEY", "UNIQUE", "PRIMARY KEY")


def schema(database: Path) -> tuple[dict[str, tuple[list[str], list[str]]], list[tuple[str]]]:
    """The database's tables and indexes (each: its definition lines, then its constraints in
    sorted order) and its migration revision. Constraints are compared as a set: alembic's
    table rebuilds emit them in an order that changes with Python's string hashing, so two
    stores MLflow builds in two processes differ in that order alone."""
    with sqlite3.connect(database) as db:
        objects = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        tables = {name: definition(sql) for name, sql in objects.fetchall()}
        revision = db.execute("SELECT * FROM alembic_version").fetchall()
    return tables, revision


def definition(sql: str) -> tuple[list[str], list[str]]:
    lines = [line.strip().rstrip(",").strip() for line in sql.splitlines()]
    constraints = sorted(line for line in lines if line.startswith(CONSTRAINT_LINES))
    return [line for line in lines if not line.startswith(CONSTRAINT_LINES)], constraints


def rows(database: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(f"SELECT * FROM {table}").fetchall()


def test_a_seeded_store_is_the_one_mlflow_builds(own_cache: Path, tmp_path: Path) -> None:
    built, seeded = tmp_path / "built" / "mlflow.db", tmp_path / "seeded" / "mlflow.db"
    built.parent.mkdir()
    seeded.parent.mkdir()
    reference = MlflowClient(tracking_uri=f"sqlite:///{built}")  # MLflow's own path
    reference.search_experiments()

    client = client_for(f"sqlite:///{seeded}")

    templates = list((own_cache / SCHEMA_FOLDER).glob("empty-*.db"))
    assert len(templates) == 1, "the template was not cached"
    assert rows(templates[0], "experiments") == []  # no location-bound row in the template
    assert schema(seeded) == schema(built)
    assert rows(seeded, "workspaces") == rows(built, "workspaces")
    # the Default experiment is made again by the new store, with the new store's location
    default = client.get_experiment("0")
    expected = reference.get_experiment("0").artifact_location
    assert (default.name, default.artifact_location) == ("Default", expected)


def test_a_seeded_store_records_and_reads_runs(own_cache: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client_for(uri)  # builds the template
    other = tmp_path / "second"
    other.mkdir()
    second_uri = f"sqlite:///{other / 'mlflow.db'}"
    client = client_for(second_uri)  # seeded from it
    experiment = client.create_experiment("e")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "miou", 0.5, step=2)
    client.set_terminated(run.info.run_id)

    # read back by a process that never seeded anything: plain MLflow
    code = (
        "from mlflow import MlflowClient; "
        f"c = MlflowClient({second_uri!r}); "
        f"r = c.get_run({run.info.run_id!r}); "
        "print(r.info.status, r.data.metrics['miou'], c.get_experiment_by_name('e').name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["FINISHED", "0.5", "e"]


def test_an_existing_store_is_never_replaced(own_cache: Path, tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    client = client_for(f"sqlite:///{database}")
    client.create_experiment("kept")

    assert not seed_store(database)
    assert client_for(f"sqlite:///{database}").get_experiment_by_name("kept") is not None


def test_an_empty_file_is_seeded(own_cache: Path, tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    database.touch()  # as `sqlite3 mlflow.db` leaves it
    assert seed_store(database)
    assert client_for(f"sqlite:///{database}").get_experiment("0").name == "Default"


def test_without_a_cache_mlflow_builds_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, "off")
    database = tmp_path / "mlflow.db"
    assert not seed_store(database)
    assert not database.exists()
    assert client_for(f"sqlite:///{database}").get_experiment("0").name == "Default"
