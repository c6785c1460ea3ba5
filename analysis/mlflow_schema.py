"""A new SQLite tracking store seeded from a cached empty schema instead of built from scratch.

MLflow gives a new SQLite store its schema by running every database migration since its first
release: about 1.5 s of CPU, paid by the first ``sweep``, ``demo`` or test on each new
``mlflow.db``. For one set of MLflow, SQLAlchemy and alembic versions the result is always the
same file, so it is built once, by MLflow itself (a client on a temporary file), in the user's
cache folder (:mod:`trainables.disk_cache`, folder ``mlflow-schema``), and copied.

The one row that depends on where a store lives, the ``Default`` experiment (its artifact
location), is removed from the cached copy; MLflow creates it again, with the new store's own
location, when it opens the copy (a store without experiment 0 gets one: ``SqlAlchemyStore``).
Anything that goes wrong leaves the store to MLflow, as before: seeding is an optimisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from importlib import metadata
from pathlib import Path

from trainables.disk_cache import cache_folder

log = logging.getLogger(__name__)

#: The cache folder's name (under ``$SPECTRAL_SWEEP_CACHE`` or ``~/.cache/spectral-sweep``).
SCHEMA_FOLDER = "mlflow-schema"
#: The distributions whose versions decide the schema MLflow writes.
SCHEMA_DISTS = ("mlflow-skinny", "mlflow", "sqlalchemy", "alembic")


def seed_store(database: Path) -> bool:
    """Give the SQLite file ``database`` MLflow's empty schema when it does not exist yet (or is
    empty); whether it did. Call under the store's lock (``client_for``): the file is linked
    into place only if still absent, so a store made meanwhile is never replaced."""
    if database.exists() and database.stat().st_size > 0:
        return False
    template = schema_template()
    if template is None:
        return False
    staged = database.with_name(f".{database.name}.{os.getpid()}.seed")
    try:
        staged.write_bytes(template.read_bytes())
        with contextlib.suppress(FileNotFoundError):
            if database.stat().st_size == 0:
                database.unlink()  # an empty file: sqlite would treat it as a new database
        os.link(staged, database)  # fails if a store appeared meanwhile: that one is kept
    except OSError as err:
        log.debug("not seeded from the cached schema (%s): MLflow builds it", err)
        return False
    finally:
        staged.unlink(missing_ok=True)
    return True


def schema_template() -> Path | None:
    """The cached empty store for the installed versions, built on first use; None when the
    cache is off or it cannot be built."""
    folder = cache_folder(SCHEMA_FOLDER)
    if folder is None:
        return None
    path = folder / f"empty-{schema_key()}.db"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        build_template(path)
    except Exception as err:  # any failure: MLflow builds the store itself, as before
        log.debug("no cached MLflow schema (%s)", err)
        return None
    return path


def schema_key() -> str:
    """A hash of the versions of :data:`SCHEMA_DISTS` (those installed)."""
    digest = hashlib.sha256()
    for dist in SCHEMA_DISTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{dist}=={metadata.version(dist)};".encode())
    return digest.hexdigest()[:16]


def build_template(path: Path) -> None:
    """An empty store at ``path``: MLflow's schema (made by an MLflow client, which runs the
    migrations) without the ``Default`` experiment. Written beside and renamed into place, so
    a concurrent reader sees a whole file or none."""
    from mlflow import MlflowClient

    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    try:
        MlflowClient(tracking_uri=f"sqlite:///{staged}").search_experiments()
        with contextlib.closing(sqlite3.connect(staged)) as db, db:
            db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
