"""The user's cache folder and its small JSON files, shared by every trial, command and process.

Two things are kept there, each in a folder of its own: FLOPs counts
(:mod:`trainables.flops_cache`) and the CE band profiles of untrained networks
(:mod:`trainables.init_profiles`). Each is a function of its key and of the code that makes
it, so a file is named by the hash of both (:func:`source_version`): changed code is a new key,
never a stale value. Writers write a temporary file and rename it over the target (atomic on
POSIX), so a concurrent reader never sees half a file; two writers of one key write the same
value.

Where: ``$SPECTRAL_SWEEP_CACHE`` (tests point it at a temporary folder), else
``$XDG_CACHE_HOME/spectral-sweep``, else ``~/.cache/spectral-sweep``.
``SPECTRAL_SWEEP_CACHE=off`` turns the disk cache off. No torch here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from importlib import metadata, util
from pathlib import Path
from typing import Any

#: Environment variable naming the cache folder ("off": no disk cache).
CACHE_ENV = "SPECTRAL_SWEEP_CACHE"


def cache_folder(name: str) -> Path | None:
    """The cache's folder ``name`` (not created here), or None when the cache is off."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser() / name
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "spectral-sweep" / name


def _sources(module: str) -> list[Path]:
    spec = util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def source_version(modules: Iterable[str], dists: Iterable[str], fmt: int) -> str:
    """A hash of the source files of ``modules`` (a package: all its files), the installed
    versions of ``dists`` and the format number ``fmt``."""
    digest = hashlib.sha256(f"format {fmt}".encode())
    for module in modules:
        for path in _sources(module):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{dist}=={metadata.version(dist)}".encode())
    return digest.hexdigest()[:16]


def key_path(folder: Path | None, key: Any) -> Path | None:
    """The file of ``key`` (JSON-serialisable, ``str`` for the rest) in ``folder``."""
    if folder is None:
        return None
    text = json.dumps(key, default=str)
    return folder / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"


def read_json(path: Path | None) -> Any:
    """The JSON value stored at ``path``; None when there is none or it cannot be read (the
    value is then made again and rewritten)."""
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path | None, value: Any, temporary_prefix: str = ".tmp-") -> None:
    """Write ``value`` at ``path`` atomically; a cache that cannot be written is skipped."""
    if path is None:
        return
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(value)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix, dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


__all__ = ["CACHE_ENV", "cache_folder", "key_path", "read_json", "source_version", "write_json"]
