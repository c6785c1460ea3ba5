"""Writes to the tracking store off the driver's loop, in order, never lost silently.

The sweep's MLflow callback hands every write (open a run, log a result, close a run) to one
:class:`WriteQueue`. A background thread performs them in the order given. A write that fails
(the store is down, the SQLite file is locked for long) is retried, with a growing pause, until it
goes through or the queue is closed: later writes wait behind it, so a run is never closed before
its metrics are in. Training never waits for the store: Tune's loop only enqueues.

- a write slower than :data:`SLOW_SECONDS` logs one line naming the store;
- the first failure of an outage logs one line (the store, the error, how many writes wait);
  its end logs another;
- :meth:`WriteQueue.close` is the final blocking flush: it waits up to its timeout for the
  queue to drain and returns the descriptions of the writes that could not be made, which the
  sweep reports (and exits non-zero for); ``--resume`` reconciles those runs from Tune's own
  results (``orchestrator.reconcile``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: A single tracking call slower than this is worth a line in the log.
SLOW_SECONDS = 10.0
#: Pause between retries of a failed write: doubles from the first to the last.
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 0.5, 10.0


@dataclass
class Write:
    """One tracking call: what it is (for messages) and the call itself."""

    what: str
    call: Callable[[], None]


class WriteQueue:
    """One background writer for one tracking store (see the module docstring)."""

    def __init__(self, store: str, slow_seconds: float = SLOW_SECONDS) -> None:
        self.store = store
        self.slow_seconds = slow_seconds
        self._pending: deque[Write] = deque()
        self._lock = threading.Condition()
        self._closing = False
        self._failing_since: float | None = None
        self.written = 0
        self.retries = 0
        self._thread = threading.Thread(target=self._work, name="tracking-writer", daemon=True)
        self._thread.start()

    def put(self, what: str, call: Callable[[], None]) -> None:
        """Queue one write (returns at once)."""
        with self._lock:
            self._pending.append(Write(what, call))
            self._lock.notify()

    @property
    def backlog(self) -> int:
        """Writes not made yet."""
        with self._lock:
            return len(self._pending)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued write; whether the queue is empty."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and time.monotonic() < deadline:
                self._lock.wait(timeout=min(0.2, max(deadline - time.monotonic(), 0.0)))
            return not self._pending

    def close(self, timeout: float) -> list[str]:
        """The final flush: wait up to ``timeout`` seconds, stop the writer, and return what
        could not be written (empty when everything went through)."""
        self.drain(timeout)
        with self._lock:
            self._closing = True
            lost = [w.what for w in self._pending]
            self._pending.clear()
            self._lock.notify_all()
        self._thread.join(timeout=self.slow_seconds + 5.0)
        return lost

    @property
    def stopped(self) -> bool:
        """Whether the writer thread has ended (after :meth:`close`, False while a slow write
        it had begun still runs)."""
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ the writer thread

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                head = self._pending[0]
            if self._attempt(head):
                with self._lock:
                    if self._pending and self._pending[0] is head:
                        self._pending.popleft()
                    self._lock.notify_all()
            else:
                self._pause()

    def _attempt(self, write: Write) -> bool:
        began = time.monotonic()
        try:
            write.call()
        except Exception as err:
            self.retries += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning(
                    "tracking store %s failed (%s: %s); %d write(s) queued, retrying while "
                    "training goes on",
                    self.store,
                    write.what,
                    _first_line(err),
                    self.backlog,
                )
            return False
        took = time.monotonic() - began
        if took > self.slow_seconds:
            log.warning("tracking store %s is slow: %s took %.0f s", self.store, write.what, took)
        if self._failing_since is not None:
            log.warning(
                "tracking store %s answers again after %.0f s; writing %d queued write(s)",
                self.store,
                time.monotonic() - self._failing_since,
                self.backlog,
            )
            self._failing_since = None
        self.written += 1
        return True

    def _pause(self) -> None:
        """Wait before retrying the head: longer the longer the store has been failing."""
        failing = time.monotonic() - (self._failing_since or time.monotonic())
        pause = min(RETRY_FIRST_SECONDS * 2 ** min(failing / 5.0, 5.0), RETRY_MAX_SECONDS)
        with self._lock:
            if not self._closing:
                self._lock.wait(timeout=pause)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


__all__ = ["SLOW_SECONDS", "Write", "WriteQueue"]
