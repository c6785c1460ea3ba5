"""What a project process does to start and end quickly: the collector's settings
(``orchestrator.process_gc``) and the imports made while a local Ray starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: A child that (maybe) configures itself, registers an exit handler after that, and leaves a
#: garbage cycle whose finaliser reports whether the interpreter's last collections reached it.
CHILD = """
import atexit, gc, os, sys
if sys.argv[1] == "configure":
    from orchestrator.process_gc import configure_process
    if sys.argv[2:] == ["user"]:
        gc.set_threshold(1000, 5, 5)
    print(configure_process(), configure_process(), gc.get_threshold(), flush=True)
atexit.register(lambda: os.write(1, f"frozen {gc.get_freeze_count()}\\n".encode()))
class Cycle:
    def __del__(self, write=os.write):
        write(1, b"cycle collected\\n")
cycle = Cycle()
cycle.me = cycle
del cycle
"""


def child(*args: str) -> list[str]:
    """The lines the child prints, in order."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_the_heap_is_frozen_at_exit_after_later_exit_handlers() -> None:
    # control: CPython's last collections at exit find the cycle and run its finaliser
    assert child("none") == ["frozen 0", "cycle collected"]
    # configured once (the second call changes nothing); the handler registered after it still
    # runs with nothing frozen, then the heap is frozen: the last collections skip the cycle
    assert child("configure") == ["True False (50000, 10, 10)", "frozen 0"]


def test_a_users_own_thresholds_are_kept() -> None:
    assert child("configure", "user") == ["False False (1000, 5, 5)", "frozen 0", "cycle collected"]


def test_imports_while_ray_starts_skip_what_is_not_installed() -> None:
    from orchestrator.tune import import_in_background

    for name in ("tabnanny", "no_such_module_here"):
        sys.modules.pop(name, None)
    thread = import_in_background(("no_such_module_here", "tabnanny"))
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "tabnanny" in sys.modules and "no_such_module_here" not in sys.modules
