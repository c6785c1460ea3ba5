"""The pieces the fault suite relies on, each alone: the ordered tracking queue (a store that
fails, then answers), the trial ledger (how a trial ended), and the Optuna wrapper (no repeated
configuration, references first) on Tune's real ``OptunaSearch``."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.ledger import (
    FAILED,
    FINISHED,
    SCHEDULER_STOPS,
    STOPPED_EARLY,
    TrialLedger,
    ended_as,
    epochs_completed,
)
from orchestrator.tracking_queue import WriteQueue


class FlakyStore:
    """A store that refuses ``failures`` calls, then records every write in order."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[int] = []
        self.lock = threading.Lock()

    def write(self, value: int) -> None:
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("connection refused")
            self.written.append(value)


def test_queue_keeps_order_through_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(failures=3)
    queue = WriteQueue("http://127.0.0.1:1")
    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking_queue"):
        for i in range(20):
            queue.put(f"write {i}", lambda i=i: store.write(i))
        assert queue.close(timeout=30) == []
    assert store.written == list(range(20))  # in order, each once, after the retries
    assert queue.retries == 3
    text = caplog.text
    assert "http://127.0.0.1:1 failed (write 0: connection refused)" in text
    assert "answers again" in text


def test_queue_returns_what_it_could_not_write() -> None:
    store = FlakyStore(failures=10**6)  # down for good
    queue = WriteQueue("sqlite:///x.db")
    for i in range(3):
        queue.put(f"write {i}", lambda i=i: store.write(i))
    began = time.monotonic()
    assert queue.close(timeout=1.0) == ["write 0", "write 1", "write 2"]
    assert time.monotonic() - began < 15 and store.written == []


def test_queue_names_a_slow_store(caplog: pytest.LogCaptureFixture) -> None:
    queue = WriteQueue("http://slow:5000", slow_seconds=0.2)
    with caplog.at_level(logging.WARNING, logger="orchestrator.tracking_queue"):
        queue.put("open the run of trial t1", lambda: time.sleep(0.4))
        assert queue.close(timeout=10) == []
    assert "tracking store http://slow:5000 is slow: open the run of trial t1 took" in caplog.text


def test_queue_says_whether_a_write_outlived_its_close() -> None:
    """A write still running when ``close`` gives up on the writer: ``stopped`` is False (the
    callback then keeps the artifact copies such a write may read), True once it ends."""
    release = threading.Event()
    queue = WriteQueue("http://slow:5000", slow_seconds=0.1)
    queue.put("close the run of trial t1", lambda: release.wait(30))
    time.sleep(0.2)  # the writer has begun the write
    assert queue.close(timeout=0.1) == ["close the run of trial t1"]  # not made in time
    assert not queue.stopped
    release.set()
    deadline = time.monotonic() + 10
    while not queue.stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.stopped


def test_putting_never_waits_for_the_store() -> None:
    queue = WriteQueue("http://127.0.0.1:1")
    queue.put("slow", lambda: time.sleep(1.0))
    began = time.monotonic()
    for i in range(100):
        queue.put(f"w{i}", lambda: None)
    assert time.monotonic() - began < 0.5
    assert queue.close(timeout=10) == []


def test_how_a_trial_ended() -> None:
    SCHEDULER_STOPS.discard("t2")
    assert ended_as({"epoch": 7, "final": True}, "t1", errored=False) == FINISHED
    assert ended_as({"epoch": 2, "final": False}, "t2", errored=False) is None  # interrupted
    SCHEDULER_STOPS.add("t2")
    assert ended_as({"epoch": 2, "final": False}, "t2", errored=False) == STOPPED_EARLY
    assert ended_as({"epoch": 2}, "t3", errored=True) == FAILED
    assert epochs_completed({"epoch": 2}) == 3 and epochs_completed(None) == 0
    SCHEDULER_STOPS.discard("t2")


def test_ledger_survives_a_new_driver(tmp_path: Path) -> None:
    ledger = TrialLedger.open(tmp_path)
    ledger.record("a", FINISHED, 4)
    ledger.record("b", STOPPED_EARLY, 1)
    ledger.record("c", FAILED, 0)
    ledger.forget("c")  # retried
    again = TrialLedger.open(tmp_path)
    assert again.counts(["a", "b", "c", "d"]) == {
        "finished": 1,
        "stopped_early": 1,
        "failed": 0,
        "unfinished": 2,
    }


def test_a_sweep_from_before_keeps_its_ledger(tmp_path: Path) -> None:
    """Sweeps started before the ledger's rename (``*.json``, which Tune's restore rewrites)
    are read from the old file until the new one is written."""
    import json

    from orchestrator.ledger import LEDGER_FILE, LEGACY_LEDGER_FILE

    legacy = {"a": {"outcome": FAILED, "epochs": 1}}
    (tmp_path / LEGACY_LEDGER_FILE).write_text(json.dumps(legacy))
    ledger = TrialLedger.open(tmp_path)
    assert ledger.outcome("a") == FAILED and not LEDGER_FILE.endswith((".json", ".pkl"))
    ledger.record("a", FINISHED, 3)
    (tmp_path / LEGACY_LEDGER_FILE).write_text(json.dumps(legacy))  # what Tune writes back
    assert TrialLedger.open(tmp_path).outcome("a") == FINISHED


@pytest.mark.slow
def test_optuna_never_repeats_and_trains_references_first() -> None:
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.param_space import OptunaSpace
    from orchestrator.unique_search import UniqueConfigs, key_of
    from search_spaces import space_from_dict

    space = space_from_dict(
        {
            "name": "tiny",
            "fixed": {"backbone": "resnet18", "dataset": "synthetic-smooth", "input_size": 33},
            "grid": {"model": ["dan", "deeplabv3plus"], "lrg": [7, 5, 3]},
        }
    )
    search = UniqueConfigs(
        OptunaSearch(space=OptunaSpace(space.to_dict()), metric="miou", mode="max", seed=0)
    )
    handed: list[dict[str, Any]] = []
    for i in range(20):
        config = search.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        assert isinstance(config, dict)
        handed.append(config)
        search.on_trial_complete(f"t{i}", result={"miou": 0.1 * i})
    keys = [key_of(c) for c in handed]
    assert len(keys) == len(set(keys))  # never twice
    assert len(handed) == 2 * 3 + 2  # every configuration, plus both models' native references
    for model in ("dan", "deeplabv3plus"):
        mine = [c for c in handed if c["model"] == model]
        assert mine[0]["lrg"] is None  # its reference came first
    assert search.repeats > 0  # Optuna did repeat itself, and was refused


def test_optuna_samples_the_union_of_sub_grids_not_their_cross_product() -> None:
    """A space of two sub-grids (an LRG grid on one model, a label-band grid on the other):
    every configuration Optuna suggests is a trial of the space, and both sub-grids are
    reached (one categorical per axis would pair dan with a label band, or an LRG with one)."""
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.param_space import OptunaSpace, trial_settings
    from orchestrator.unique_search import key_of
    from search_spaces import space_from_dict

    space = space_from_dict(
        {
            "name": "union",
            "fixed": {"backbone": "resnet18", "dataset": "synthetic-smooth", "input_size": 33},
            "grids": [
                {"model": ["dan"], "lrg": [7, 5, 3]},
                {"model": ["deeplabv3plus"], "annotation_nu_max": [4, 2, 1]},
            ],
        }
    )
    inside = {t.key for t in space.trials()}
    search = OptunaSearch(space=OptunaSpace(space.to_dict()), metric="miou", mode="max", seed=0)
    suggested = []
    for i in range(24):
        suggested.append(trial_settings(search.suggest(f"t{i}")))
        search.on_trial_complete(f"t{i}", result={"miou": 0.01 * i})
    outside = [c for c in suggested if key_of(c) not in inside]
    assert outside == []
    assert {c["model"] for c in suggested} == {"dan", "deeplabv3plus"}


@pytest.mark.ray
@pytest.mark.slow
def test_asha_stopped_trials_say_so_and_analysis_leaves_them_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ASHA sweep: the trials it stops end FINISHED with ``stopped_early`` and their
    epochs, the summary counts them apart, and ``load_runs_mlflow`` leaves them out (warned)."""
    import json

    import ray

    from analysis.mlflow_runs import runs_frame
    from analysis.mlflow_trials import load_runs_mlflow
    from analysis.runs import AnalysisWarning
    from orchestrator.cli import main

    space = {
        "name": "asha",
        "fixed": {"backbone": "resnet18", "dataset": "synthetic-smooth", "model": "dan",
                  "input_size": 33, "num_classes": 3, "batch_size": 4, "epochs": 3, "lr": 0.01,
                  "train_length": 8, "eval_length": 4},
        "grid": {"lrg": [9, 7, 5, 3], "seed": [0, 1]},
    }  # fmt: skip
    path = tmp_path / "asha.yaml"
    path.write_text(json.dumps(space))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["sweep", "--space-file", str(path), "--tracking-uri", uri, "--quiet"]
    argv += ["--storage", str(tmp_path / "runs"), "--max-concurrent", "1"]
    argv += ["--scheduler", "asha", "--asha-reduction-factor", "2", "--asha-grace-period", "1"]
    if ray.is_initialized():
        ray.shutdown()
    try:
        assert main(argv) == 0
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    runs = runs_frame(uri, "asha")
    runs = runs.loc[runs["tags.spectral_sweep.role"] != "sweep"]
    stopped = runs.loc[runs["tags.spectral_sweep.stopped_early"] == "true"]
    assert len(runs) == 8 and set(runs["status"]) == {"FINISHED"}
    assert 1 <= len(stopped) < 8, "ASHA stopped no trial: the test lost its point"
    assert (stopped["tags.spectral_sweep.epochs_completed"].astype(int) < 3).all()
    assert (stopped["metrics.epoch"] < 2).all()
    full = runs.drop(stopped.index)
    assert (full["metrics.epoch"] == 2).all()
    assert f"{len(full)} finished, {len(stopped)} stopped early, 0 failed, 0 unfinished" in out
    with pytest.warns(AnalysisWarning, match=f"{len(stopped)} run\\(s\\) stopped early"):
        table = load_runs_mlflow(uri, "asha")
    assert len(table) == len(full)


def test_a_killed_drivers_artifact_copies_are_removed_by_the_next(tmp_path: Path) -> None:
    """The driver's copies of trial artifacts (a checkpoint with ``--log-model``) are named by
    their process, like a trial's scratch folder: those of a driver that no longer runs go,
    a running one's stay (the tracking callback removes them as a sweep starts)."""
    import subprocess
    import sys

    from orchestrator.mlflow_callback import ARTIFACTS_PREFIX
    from trainables.owned_folders import owned_prefix, remove_stale

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    mine = owned_prefix(ARTIFACTS_PREFIX)
    space = mine.removeprefix(ARTIFACTS_PREFIX).split("-")[0]
    stale = tmp_path / f"{ARTIFACTS_PREFIX}{space}-{ended}-abc"
    live = tmp_path / f"{mine}abc"
    unrelated = tmp_path / f"{ARTIFACTS_PREFIX}x1"
    for folder in (stale, live, unrelated):
        folder.mkdir()
    assert remove_stale(str(tmp_path), ARTIFACTS_PREFIX) == [stale]
    assert live.is_dir() and unrelated.is_dir() and not stale.exists()
