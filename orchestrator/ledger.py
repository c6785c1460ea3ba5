"""How each trial of a sweep ended, as the driver saw it, kept beside Tune's state (no Ray here).

Tune marks a trial TERMINATED when it completes, when a scheduler stops it early, and when an
interrupted driver cleans up, so its status alone cannot say which. The driver can: a trial is
**finished** when its last report was its last epoch (``final``), **stopped early** when the
scheduler stopped it (:data:`SCHEDULER_STOPS`, filled by the ASHA scheduler in
``orchestrator.tune``), **failed** on an error; anything else did not end (an interrupt) and a
``--resume`` continues it. The ledger file (``<experiment>/spectral_sweep_trials.ledger``,
JSON) keeps these outcomes across driver restarts; the sweep's summary counts them, and the
MLflow runs are closed with the same outcome (FINISHED, FINISHED with ``stopped_early``,
FAILED, KILLED).

Its name does not end in ``.json``: Tune's restore copies every ``*.json`` and ``*.pkl`` of
the experiment folder into its staging folder and writes them back at each save of its state,
so a ``.json`` ledger would be reset to what it held when the driver resumed (a failed trial
that the resume finishes would stay failed). Sweeps from before keep ``LEGACY_LEDGER_FILE``,
read when the new file does not exist yet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEDGER_FILE = "spectral_sweep_trials.ledger"
LEGACY_LEDGER_FILE = "spectral_sweep_trials.json"

FINISHED, STOPPED_EARLY, FAILED = "finished", "stopped_early", "failed"
OUTCOMES: tuple[str, ...] = (FINISHED, STOPPED_EARLY, FAILED)

#: Trial ids a scheduler decided to stop, in this driver process (the ASHA scheduler adds them).
SCHEDULER_STOPS: set[str] = set()


def ended_as(last_result: Mapping[str, Any] | None, trial_id: str, errored: bool) -> str | None:
    """The outcome of a trial Tune stopped: failed, finished (its last epoch reported),
    stopped early (by the scheduler), or None (interrupted: not ended)."""
    if errored:
        return FAILED
    if last_result and bool(last_result.get("final")):
        return FINISHED
    if trial_id in SCHEDULER_STOPS:
        return STOPPED_EARLY
    return None


def epochs_completed(last_result: Mapping[str, Any] | None) -> int:
    """Epochs a trial completed, from its last report's ``epoch`` (0-based)."""
    if not last_result or last_result.get("epoch") is None:
        return 0
    return int(last_result["epoch"]) + 1


@dataclass
class TrialLedger:
    """Outcomes by trial id, saved as JSON in the experiment directory."""

    path: Path
    outcomes: dict[str, dict[str, Any]]

    @classmethod
    def open(cls, experiment_path: str | Path) -> TrialLedger:
        path = Path(experiment_path) / LEDGER_FILE
        legacy = Path(experiment_path) / LEGACY_LEDGER_FILE
        source = path if path.exists() or not legacy.exists() else legacy
        try:
            data = json.loads(source.read_text("utf-8"))
        except (OSError, ValueError):
            data = {}
        return cls(path, data if isinstance(data, dict) else {})

    def record(self, trial_id: str, outcome: str, epochs: int) -> None:
        """Note how a trial ended and save at once (a driver may die any time)."""
        self.outcomes[trial_id] = {"outcome": outcome, "epochs": epochs}
        self.save()

    def forget(self, trial_id: str) -> None:
        """A failed trial that Tune retries is not ended any more."""
        if self.outcomes.pop(trial_id, None) is not None:
            self.save()

    def outcome(self, trial_id: str) -> str | None:
        entry = self.outcomes.get(trial_id)
        return str(entry["outcome"]) if entry else None

    def save(self) -> None:
        """Write atomically (a temporary file renamed over the old one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.outcomes, indent=1, sort_keys=True) + "\n", "utf-8")
        os.replace(tmp, self.path)

    def counts(self, trial_ids: Iterable[str]) -> dict[str, int]:
        """How many of ``trial_ids`` ended each way (and ``unfinished``: not ended)."""
        out = dict.fromkeys((*OUTCOMES, "unfinished"), 0)
        for trial_id in trial_ids:
            out[self.outcome(trial_id) or "unfinished"] += 1
        return out


__all__ = [
    "FAILED",
    "FINISHED",
    "LEDGER_FILE",
    "OUTCOMES",
    "SCHEDULER_STOPS",
    "STOPPED_EARLY",
    "TrialLedger",
    "ended_as",
    "epochs_completed",
]
