"""The cyclic garbage collector's settings for this project's processes: the command line
(a sweep's driver) and Tune's trial workers.

CPython collects its oldest generation each time the tracked heap has grown by a quarter since
the last full collection. Importing Ray, MLflow, pandas, torch and timm makes millions of
long-lived objects, so with the default thresholds ``(700, 10, 10)`` a process pays six to
nine full collections while it starts (0.6 s of a trial worker's first trial, 1.5 s before a
sweep's first trial on this machine's driver) and, at exit, the interpreter's last
collections walk the whole heap again (about 2 s for a sweep's driver). None of it finds
garbage worth the walk: the objects are modules, classes and functions that live as long as
the process.

:func:`configure_process` raises the first threshold to :data:`GEN0_THRESHOLD` (the young
generation is collected once 50,000 more tracked objects are alive than at its last collection,
instead of 700), so a process's start-up triggers no full collection; garbage cycles made later
are still collected, later (a training step frees most of what it allocates: a warm demo trial
triggered 3-4 young collections with 700 and none with 50,000). At exit it freezes the heap
(``gc.freeze``: the final collections skip it; objects are still freed by reference counting as
modules are torn down, and the memory goes back to the system with the process).
Registered before a command's heavy imports, the freeze runs after the exit handlers of Ray,
MLflow and Tune; where it runs before one (a worker imports Ray first), that handler only finds
the collector leaving the older objects alone. Nothing is changed where the process's
thresholds are not CPython's defaults: a user's own setting stands.
"""

from __future__ import annotations

import atexit
import gc

#: Allocations (less deallocations) between collections of the youngest generation; CPython's
#: default is 700.
GEN0_THRESHOLD = 50_000
DEFAULT_THRESHOLDS = (700, 10, 10)


def configure_process() -> bool:
    """Raise the collector's first threshold and freeze the heap at exit, once per process;
    whether this call changed anything (False: done before, or the thresholds are the user's:
    either way they are no longer CPython's defaults)."""
    if gc.get_threshold() != DEFAULT_THRESHOLDS:
        return False
    gc.set_threshold(GEN0_THRESHOLD, *DEFAULT_THRESHOLDS[1:])
    atexit.register(gc.freeze)  # exit handlers run last-registered first
    return True
