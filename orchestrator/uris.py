"""MLflow tracking URIs: the default store, resolving the flag, checking it before a sweep starts.

No MLflow import here: these are string and file-system checks (one HTTP ``/health`` probe,
SQLite's own ``quick_check`` of an existing store, a database driver's import),
so commands can fail fast on a URI the sweep could not write to before anything heavy loads.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path

from trainables.errors import InputError

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: What a tracking URI may be, for error messages.
EXPECTED_URI = "sqlite:///PATH/mlflow.db or http://HOST:PORT"


def default_tracking_uri(directory: str | Path | None = None) -> str:
    """``sqlite:///<dir>/mlflow.db`` (absolute; ``dir`` defaults to the working directory)."""
    base = Path(directory) if directory is not None else Path.cwd()
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI to use: the flag, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite file.
    An empty flag is an error, not the default (a shell variable that was never set)."""
    if uri is not None and not uri.strip():
        raise InputError(
            f"--tracking-uri {uri!r} is empty; expected {EXPECTED_URI} (or leave the flag out "
            "for ./mlflow.db)"
        )
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute with four slashes), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest) if rest.startswith("/") else (Path.cwd() / rest).resolve()


def absolute_sqlite_uri(uri: str) -> str:
    """A ``sqlite:///`` URI whose path is relative, made absolute against the working
    directory; any other URI as it is. A sweep saves its URIs for ``--resume``: a resume from
    another directory must write to the same database, not a new one beside it."""
    path = sqlite_path(uri)
    if path is None or uri.startswith("sqlite:////"):
        return uri
    query = uri.partition("?")[2]
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def is_local_uri(uri: str) -> bool:
    """Whether the store is a file on this machine (only the local node can write it)."""
    return uri.startswith("sqlite:")


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store live beside it (``mlartifacts/<experiment>``); servers decide."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def check_tracking_uri(uri: str, timeout: float = 3.0, *, probe_server: bool = True) -> None:
    """Fail fast (InputError) on a tracking URI the sweep could not write to.

    SQLite: the database's directory must exist and be writable, and an existing, non-empty
    database file must be an SQLite database (its 16-byte header; a missing or empty file is
    fine: MLflow creates it). HTTP(S): ``GET /health`` must answer within ``timeout`` seconds
    (skipped with ``probe_server=False``, for checks that must not touch the network). Plain
    paths and ``file:`` URIs (MLflow's file store) are refused. Database URIs (postgresql,
    mysql, mssql) must parse and name an installed driver; any other scheme must be one MLflow
    serves (databricks, uc) or a plugin adds. A URI that does not parse is refused.
    """
    scheme = _scheme(uri)
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("http", "https"):
        if probe_server:
            _check_server(uri, timeout)
    elif scheme in ("", "file"):
        raise InputError(_file_store_message(uri, scheme))
    elif scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        _check_database_driver(uri)
    elif scheme not in OTHER_SCHEMES and scheme not in _plugin_schemes():
        raise InputError(
            f"tracking URI {uri!r}: MLflow has no tracking store for scheme {scheme!r}; "
            f"expected {EXPECTED_URI}"
        )


#: Database schemes MLflow's SQLAlchemy store serves (``DIALECT[+DRIVER]://...``).
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
#: MLflow's other built-in tracking stores (besides SQLite, HTTP(S) and databases).
OTHER_SCHEMES = ("databricks", "databricks-uc", "uc")


def _scheme(uri: str) -> str:
    """The URI's scheme, or InputError when the URI cannot be parsed (a bad port or host)."""
    try:
        parsed = urllib.parse.urlparse(uri)
        parsed.port  # noqa: B018 (parsing the port is the check)
    except ValueError as err:
        raise InputError(
            f"tracking URI {uri!r} is malformed ({err}); expected {EXPECTED_URI}"
        ) from None
    return parsed.scheme.lower()


def _plugin_schemes() -> set[str]:
    """Schemes of tracking stores that installed packages add (MLflow's entry points)."""
    from importlib.metadata import entry_points

    return {entry.name for entry in entry_points(group="mlflow.tracking_store")}


def _check_database_driver(uri: str) -> None:
    """A database URI must parse and its Python driver must be installed (MLflow would fail
    with an import error deep in SQLAlchemy)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise InputError(
            f"tracking URI {uri!r} is not a database URL SQLAlchemy reads ({err})"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise InputError(
            f"tracking URI {uri!r} needs the database driver {err.name or dialect.driver!r}, "
            "which is not installed; install it, or use sqlite:///PATH/mlflow.db"
        ) from None


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` starts with the SQLite 3 header (False if it cannot be read)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _file_store_message(uri: str, scheme: str) -> str:
    """Why a plain path or ``file:`` URI is refused; a path to a database gets its sqlite URI."""
    raw = urllib.parse.unquote(urllib.parse.urlparse(uri).path) if scheme == "file" else uri
    path = Path(raw).expanduser()
    head = f"tracking URI {uri!r}"
    if path.is_file():
        if is_sqlite_file(path):
            return (
                f"{head} is a plain path to an SQLite database; pass it as "
                f"sqlite:///{path.resolve()}"
            )
        return (
            f"{head} is a plain path to a file that is not an SQLite database; expected "
            f"{EXPECTED_URI}"
        )
    return f"{head}: file stores are not supported; use {EXPECTED_URI}"


def _check_sqlite(uri: str) -> None:
    db = sqlite_path(uri)
    if db is None:
        raise InputError(
            f"tracking URI {uri!r} names no database file; expected sqlite:///PATH/mlflow.db"
        )
    if db.is_dir():
        raise InputError(
            f"tracking URI {uri!r}: {db} is a directory; expected an SQLite database file "
            f"such as sqlite:///{db / 'mlflow.db'}"
        )
    if db.parent.exists() and not db.parent.is_dir():
        raise InputError(f"tracking URI {uri!r}: {db.parent} is a file, not a directory")
    if not db.parent.is_dir():
        raise InputError(f"tracking URI {uri!r}: directory {db.parent} does not exist")
    if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
        raise InputError(f"tracking URI {uri!r}: {db} is not writable")
    _check_sqlite_file(uri, db)


def _check_sqlite_file(uri: str, db: Path) -> None:
    """An existing, non-empty database file must start with the SQLite 3 header and pass
    SQLite's own integrity check (a missing or empty one is MLflow's to create)."""
    try:
        if not db.is_file() or db.stat().st_size == 0:
            return  # missing or empty: MLflow creates the schema
        with db.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise InputError(f"tracking URI {uri!r}: {db} cannot be read ({err.strerror})") from None
    if header != SQLITE_HEADER:
        raise InputError(
            f"tracking URI {uri!r}: {db} is not an SQLite database (no 'SQLite format 3' "
            "header); expected an MLflow SQLite database, or a path where one can be created"
        )
    _check_sqlite_intact(uri, db)
    _check_mlflow_tables(uri, db)


#: Tables every MLflow SQLite store has; a database with tables but none of these is someone
#: else's, and MLflow would add its schema to it. (None rather than all: a store that another
#: process is creating this moment has some of them already.)
MLFLOW_TABLES = frozenset({"experiments", "runs", "alembic_version"})


def sqlite_tables(db: Path) -> set[str]:
    """The table names of an SQLite database (empty when it cannot be read)."""
    try:
        read_only = f"{db.resolve().as_uri()}?mode=ro"  # escaped: '?' or '#' in a name
        with closing(sqlite3.connect(read_only, uri=True, timeout=1.0)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:
        return set()
    return {str(name) for (name,) in rows}


def _check_mlflow_tables(uri: str, db: Path) -> None:
    """A database with tables of its own is not made into an MLflow store."""
    tables = sqlite_tables(db)
    if tables and not tables & MLFLOW_TABLES:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise InputError(
            f"tracking URI {uri!r}: {db} is an SQLite database but not an MLflow store (its "
            f"tables: {shown}); it is left as it is: pass a new path or an MLflow store"
        )


def _check_sqlite_intact(uri: str, db: Path) -> None:
    """SQLite's own ``quick_check`` of an existing database (3-15 ms for the demo's store, 0.33 s
    for 194 MB): a damaged file (cut short by a full disk, overwritten) is refused in one line
    instead of failing in the middle of MLflow. It only reads (opening rolls back a crashed
    writer's journal, as MLflow's own first connection would); a store that another process
    holds locked is left to MLflow, which waits for it."""
    try:
        with closing(sqlite3.connect(db, timeout=1.0)) as conn:
            result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError as err:
        if "locked" in str(err) or "busy" in str(err):
            return
        result = str(err)
    except sqlite3.DatabaseError as err:
        result = str(err)
    if result != "ok":
        raise InputError(
            f"tracking URI {uri!r}: {db} is damaged ({result}); restore it from a copy, or "
            "pass another --tracking-uri"
        )


def _check_server(uri: str, timeout: float) -> None:
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:
            if response.status != 200:
                raise InputError(f"tracking URI {uri!r}: {health} answered {response.status}")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise InputError(
            f"tracking server {uri!r} is unreachable ({reason}); start it with `mlflow "
            "server --backend-store-uri sqlite:///PATH/mlflow.db --host HOST --port PORT`"
        ) from None


def check_store_exists(uri: str) -> None:
    """A store to read must exist already: reading must not create an SQLite file, nor give
    MLflow's schema to an empty one (MLflow creates it on connecting)."""
    db = sqlite_path(uri)
    if uri.startswith("sqlite:") and (db is None or not db.exists()):
        raise InputError(
            f"no MLflow database at {db or uri}; run a sweep first or pass --tracking-uri"
        )
    check_tracking_uri(uri)
    if db is not None and uri.startswith("sqlite:") and not sqlite_tables(db):
        raise InputError(
            f"{db} holds no MLflow store (an empty database); run a sweep first or pass "
            "--tracking-uri"
        )


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    return f"open {uri} in a browser"


__all__ = [
    "EXPECTED_URI",
    "SQLITE_HEADER",
    "absolute_sqlite_uri",
    "artifact_location",
    "check_store_exists",
    "check_tracking_uri",
    "default_tracking_uri",
    "is_local_uri",
    "is_sqlite_file",
    "resolve_tracking_uri",
    "sqlite_path",
    "ui_command",
]
