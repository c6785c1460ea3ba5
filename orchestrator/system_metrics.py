"""MLflow's system metrics, sampled inside a trial and carried to the driver with its results.

``sweep --system-metrics`` turns them on. MLflow's own ``SystemMetricsMonitor`` writes to the
store from the process it runs in; a sweep keeps every write on the driver (SQLite stays safe),
so each trial samples with MLflow's monitors (CPU, memory, disk, network, and NVIDIA/AMD GPUs
where their libraries are present) on a thread and reports the averages of each evaluation
interval under MLflow's names (``system/cpu_utilization_percentage``, ...): the UI's System
Metrics tab shows them. Sampling every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds
(default 2: trials are short).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

#: MLflow's prefix for system metrics.
PREFIX = "system/"
#: Seconds between samples unless MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL says otherwise.
DEFAULT_INTERVAL = 2.0


def _monitors() -> list[Any]:
    """MLflow's monitors that work here (GPU ones only with their libraries and a device)."""
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    monitors: list[Any] = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    for path in ("gpu_monitor:GPUMonitor", "rocm_monitor:ROCMMonitor"):
        module, _, name = path.partition(":")
        try:
            mod = __import__(f"mlflow.system_metrics.metrics.{module}", fromlist=[name])
            monitors.append(getattr(mod, name)())
            break
        except Exception:  # no library or no device: no GPU metrics, as in MLflow
            continue
    return monitors


class SystemMetricsSampler:
    """Samples on a daemon thread from construction; :meth:`take` returns the averages since
    the last call (one sample taken now when none was yet) and starts a new interval."""

    def __init__(self, interval: float | None = None) -> None:
        env = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
        self.interval = float(interval or (env and float(env)) or DEFAULT_INTERVAL)
        self.monitors = _monitors()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._samples = 0
        self._thread = threading.Thread(target=self._loop, name="system-metrics", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        with self._lock:
            for monitor in self.monitors:
                try:
                    monitor.collect_metrics()
                except Exception as err:  # a monitor that fails once is left out, not fatal
                    log.debug("system metrics: %s failed: %s", type(monitor).__name__, err)
            self._samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._collect()
            self._stop.wait(self.interval)

    def take(self) -> dict[str, float]:
        """``{"system/<name>": average}`` over the interval since the previous call."""
        if self._samples == 0:
            self._collect()
        out: dict[str, float] = {}
        with self._lock:
            for monitor in self.monitors:
                try:
                    values = monitor.aggregate_metrics()
                except Exception:  # nothing collected by this monitor
                    values = {}
                out.update({PREFIX + k: float(v) for k, v in values.items()})
                monitor.clear_metrics()
            self._samples = 0
        return out

    def stop(self) -> None:
        """End the sampling thread."""
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)


__all__ = ["PREFIX", "SystemMetricsSampler"]
