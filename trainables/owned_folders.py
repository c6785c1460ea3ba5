"""Temporary folders named by the process that owns them, so folders of processes that were
killed (``kill -9``, out of memory, a lost node) can be told apart and removed. No torch here.

A name is ``<prefix><pid namespace>-<pid>-<tempfile's part>``: a trial's checkpoint scratch
folder (``trainables.checkpoint``, in ``/dev/shm`` when it has room: memory until reboot) and
the driver's copies of trial artifacts (``orchestrator.mlflow_callback``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def owned_prefix(prefix: str) -> str:
    """``prefix`` followed by this process's pid namespace and pid (a ``tempfile`` prefix)."""
    return f"{prefix}{_pid_namespace()}-{os.getpid()}-"


def remove_stale(directory: str | None, prefix: str) -> list[Path]:
    """Remove the ``prefix`` folders in ``directory`` (default: the system temp dir) whose
    process no longer runs; the removed paths. Left alone: folders of running processes (this
    one, another user's, another sweep's), of processes in another pid namespace (containers
    that share ``/dev/shm`` but not their pids), and anything else."""
    root = Path(directory if directory is not None else tempfile.gettempdir())
    here = _pid_namespace()
    removed = []
    for path in root.glob(f"{prefix}*-*-*"):
        space, pid = _owner(path.name, prefix)
        if space != here or pid is None or pid == os.getpid() or _running(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _owner(name: str, prefix: str) -> tuple[str, int | None]:
    """``(pid namespace, pid)`` of an owned folder's name."""
    space, _, rest = name[len(prefix) :].partition("-")
    head = rest.split("-", 1)[0]
    return space, int(head) if head.isdigit() else None


def _pid_namespace() -> str:
    """This process's pid namespace (Linux: the inode of ``/proc/self/ns/pid``), else "0"."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    digits = "".join(c for c in link if c.isdigit())
    return digits or "0"


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists here (another user's counts: signal 0 is refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["owned_prefix", "remove_stale"]
