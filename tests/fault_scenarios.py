"""Fault scenarios on real sweeps: real ``spectral-sweep`` driver processes, a real local Ray,
a real MLflow store (a SQLite file, or an ``mlflow server`` on 127.0.0.1), real signals.

Shared by ``tests/test_faults.py`` (small, for CI) and ``benchmarks/faults.py`` (larger, a
table). Each scenario returns an :class:`Observed`: the exit code(s), and what the MLflow
record holds afterwards, checked against Tune's own per-trial results (``result.json``).
Every process a scenario starts is its own (a new session), and it kills only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def tiny_space(name: str, trials: int, epochs: int) -> dict[str, Any]:
    """``trials`` tiny one-thread DAN trials (input 33) of ``epochs`` epochs each."""
    lrgs = [9, 7, 5, 3][:trials]
    return {
        "name": name,
        "fixed": {
            "backbone": "resnet18",
            "dataset": "synthetic-smooth",
            "model": "dan",
            "input_size": 33,
            "num_classes": 3,
            "batch_size": 4,
            "epochs": epochs,
            "lr": 0.01,
            "train_length": 8,
            "eval_length": 4,
            "device": "cpu",
        },
        "grid": {"lrg": lrgs},
    }


@dataclass
class Sweep:
    """One sweep's places: its space file, Tune storage and MLflow store."""

    root: Path
    name: str
    trials: int
    epochs: int
    uri: str = ""

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.space = self.root / f"{self.name}.yaml"  # JSON is YAML
        self.space.write_text(json.dumps(tiny_space(self.name, self.trials, self.epochs)))
        self.storage = self.root / "runs"
        self.uri = self.uri or f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    @property
    def experiment_dir(self) -> Path:
        return self.storage / self.name

    def command(self, *extra: str, resume: bool = False) -> list[str]:
        base = [sys.executable, "-m", "orchestrator.cli", "sweep", "--quiet"]
        base += ["--storage", str(self.storage)]
        if resume:
            return [*base, "--resume", "--name", self.name, *extra]
        return [*base, "--space-file", str(self.space), "--tracking-uri", self.uri, *extra]

    def start(
        self, *extra: str, resume: bool = False, env: Mapping[str, str] | None = None
    ) -> Driver:
        """The driver as its own process group (so a kill takes its Ray with it); ``env``
        added to its environment."""
        log = self.root / f"driver-{time.monotonic_ns()}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                self.command(*extra, resume=resume),
                cwd=REPO,
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        return Driver(process, log)

    def results(self) -> int:
        """Results Tune has written so far, over every trial (``result.json`` lines)."""
        return sum(
            len(p.read_text().splitlines()) for p in self.experiment_dir.glob("*/result.json")
        )


@dataclass
class Driver:
    """A running ``spectral-sweep`` driver and the file its output goes to."""

    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, driver: Driver | None = None
) -> None:
    """Poll ``condition``; a driver that exits meanwhile fails the wait with its output."""
    deadline = time.monotonic() + timeout
    while not condition():
        if driver is not None and driver.process.poll() is not None:
            raise RuntimeError(f"{what}: the driver exited: {driver.output()[-1500:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.25)


def finish(driver: Driver, timeout: float = 600) -> int:
    """Wait for a driver; kill its group if it hangs."""
    try:
        return driver.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(driver, signal.SIGKILL)
        raise


def kill_group(driver: Driver, sig: int) -> None:
    """Send ``sig`` to the driver's process group (its own session: ours only)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, sig)


def reap_group(driver: Driver) -> None:
    """After a SIGKILL of the driver: whatever its session left (Ray's daemons) goes too."""
    kill_group(driver, signal.SIGKILL)
    driver.process.wait(timeout=60)
    time.sleep(1.0)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def trial_workers(driver: Driver) -> list[int]:
    """The Ray worker processes running trials under this driver."""
    found = []
    for pid in descendants(driver.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ImplicitFunc" in cmdline or "spectral_sweep_trial" in cmdline:
            found.append(pid)
    return found


# --------------------------------------------------------------------- the record


@dataclass
class Observed:
    """What a scenario left: exit codes, the MLflow record against Tune's."""

    scenario: str
    expected: str
    exit_codes: list[int]
    runs: int = 0
    finished: int = 0
    lost: int = 0  # trials without a FINISHED run holding every epoch
    duplicated: int = 0  # steps logged more than once, over every run
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "expected": self.expected,
            "observed": f"exit {'/'.join(map(str, self.exit_codes))}, {self.finished} of "
            f"{self.runs} runs FINISHED",
            "runs lost": self.lost,
            "steps duplicated": self.duplicated,
        }


def check_record(sweep: Sweep, observed: Observed) -> Observed:
    """One FINISHED run per trial, each epoch logged exactly once (MLflow's metric history of
    ``epoch``), against the trial ids Tune ran."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=sweep.uri)
    experiment = client.get_experiment_by_name(sweep.name)
    trial_ids = sorted(
        p.name for p in sweep.experiment_dir.iterdir() if (p / "result.json").exists()
    )
    every = client.search_runs([experiment.experiment_id]) if experiment else []
    runs = [r for r in every if r.data.tags.get("spectral_sweep.role") != "sweep"]
    by_trial: dict[str, list[Any]] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags.get("spectral_sweep.trial_id", ""), []).append(run)
    observed.runs = len(runs)
    observed.finished = sum(r.info.status == "FINISHED" for r in runs)
    for trial_id in trial_ids:
        mine = by_trial.get(trial_id, [])
        if len(mine) != 1 or mine[0].info.status != "FINISHED":
            observed.lost += 1
            observed.notes.append(f"{trial_id}: {[r.info.status for r in mine]}")
            continue
        steps = [m.step for m in client.get_metric_history(mine[0].info.run_id, "epoch")]
        observed.duplicated += len(steps) - len(set(steps))
        if sorted(set(steps)) != list(range(sweep.epochs)):
            observed.lost += 1
            observed.notes.append(f"{trial_id}: epochs {sorted(set(steps))}")
    parents = [r.info.run_id for r in every if r.data.tags.get("spectral_sweep.role") == "sweep"]
    unnested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") not in parents[:1]]
    if len(parents) != 1 or unnested:
        observed.lost += len(unnested) + abs(len(parents) - 1)
        observed.notes.append(f"{len(parents)} sweep run(s); {len(unnested)} run(s) not under it")
    missing = sweep.trials - len(trial_ids)
    if missing > 0:
        observed.lost += missing
        observed.notes.append(f"{missing} trial(s) never ran")
    return observed


def statuses(sweep: Sweep) -> str:
    """The sweep's MLflow run statuses as ``STATUS=count`` (sorted), e.g. ``KILLED=2``."""
    from collections import Counter

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=sweep.uri)
    experiment = client.get_experiment_by_name(sweep.name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    trials = [r for r in runs if r.data.tags.get("spectral_sweep.role") != "sweep"]
    counts = Counter(r.info.status for r in trials)
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


# --------------------------------------------------------------------- an MLflow server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The test servers run without MLflow's job runner (GenAI scorers, which no test uses): it
#: starts a consumer process and makes a job store in ``/dev/shm`` that MLflow never removes,
#: one per server start.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1, stoppable and restartable on the same port and
    store (a tracking outage)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        with (self.root / "server.log").open("a") as log:  # the server keeps its own handle
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                 f"sqlite:///{self.root / 'server.db'}", "--artifacts-destination",
                 str(self.root / "server-artifacts"), "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", "1"],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **SERVER_ENV},
            )  # fmt: skip
        wait_for(self.healthy, timeout, "mlflow server healthy")

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError((self.root / "server.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


# --------------------------------------------------------------------- scenarios


def worker_killed(root: Path, trials: int = 2, epochs: int = 3) -> Observed:
    """A trial's worker process SIGKILLed mid-trial: Tune retries it from its checkpoint."""
    sweep = Sweep(root, "worker-killed", trials, epochs)
    driver = sweep.start("--max-concurrent", "1")
    wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
    workers = trial_workers(driver)
    killed = workers[:1]
    scratch = scratch_folders(killed)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    code = finish(driver)
    observed = Observed("worker killed mid-trial", "exit 0, retried", [code])
    observed.notes.append(f"killed {len(killed)} worker(s)")
    # a killed worker never removes its scratch folder; the retry's worker does
    observed.notes.append(
        f"scratch folders of killed workers: {len(scratch)} before, "
        f"{len(scratch_folders(killed))} after"
    )
    return check_record(sweep, observed)


def failed_then_resumed(root: Path, trials: int = 2, epochs: int = 3) -> Observed:
    """A trial's worker SIGKILLed with ``--max-failures 0``: the trial fails and the sweep
    exits 1; ``--resume`` trains it again, and the record (and the summary) say finished."""
    sweep = Sweep(root, "failed-resumed", trials, epochs)
    driver = sweep.start("--max-concurrent", "1", "--max-failures", "0")
    wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
    for pid in trial_workers(driver)[:1]:
        os.kill(pid, signal.SIGKILL)
    codes = [finish(driver)]
    resumed = sweep.start(resume=True)
    codes.append(finish(resumed))
    observed = Observed("trial failed, then resumed", "exit 1, then 0", codes)
    lines = resumed.output().splitlines()
    observed.notes.append(next((ln for ln in lines if " unfinished of " in ln), ""))
    return check_record(sweep, observed)


def scratch_folders(pids: list[int]) -> list[Path]:
    """The trial scratch folders (``trainables.checkpoint.scratch_folder``) of ``pids``."""
    from trainables.checkpoint import SCRATCH_PREFIX, scratch_dir

    root = Path(scratch_dir() or tempfile.gettempdir())
    return [p for pid in pids for p in root.glob(f"{SCRATCH_PREFIX}*-{pid}-*")]


def driver_killed(root: Path, kills: int = 3, trials: int = 2, epochs: int = 4) -> Observed:
    """The driver SIGKILLed right after a result lands, ``kills`` times, then resumed."""
    sweep = Sweep(root, "driver-killed", trials, epochs)
    codes = []
    driver = sweep.start("--max-concurrent", "1")
    for _ in range(kills):
        seen = sweep.results()
        wait_for(lambda seen=seen: sweep.results() > seen, 240, "a new result", driver)
        kill_group(driver, signal.SIGKILL)
        reap_group(driver)
        codes.append(-9)
        driver = sweep.start(resume=True)
    codes.append(finish(driver))
    expected = f"{kills} kills, then exit 0"
    return check_record(sweep, Observed("driver SIGKILLed after a result", expected, codes))


def interrupted(root: Path, pending: bool, epochs: int = 3) -> Observed:
    """Ctrl-C with trials pending (one slot, three trials) or with every trial running (two
    slots, two trials): exit 130 and the resume command; then ``--resume`` finishes."""
    trials = 3 if pending else 2
    name = "ctrl-c-pending" if pending else "ctrl-c-running"
    sweep = Sweep(root, name, trials, epochs)
    driver = sweep.start("--max-concurrent", "1" if pending else "2")
    wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
    kill_group(driver, signal.SIGINT)
    first = finish(driver)
    text = driver.output()
    observed = Observed(f"Ctrl-C, {'trials pending' if pending else 'all running'}",
                        "exit 130 + resume command, then 0", [first])  # fmt: skip
    if "spectral-sweep sweep --resume --name" not in text:
        observed.notes.append("no resume command printed")
    observed.notes.append(statuses(sweep))
    observed.notes.append(next((ln for ln in text.splitlines() if " unfinished of " in ln), ""))
    observed.exit_codes.append(finish(sweep.start(resume=True)))
    return check_record(sweep, observed)


def terminated(root: Path, epochs: int = 3) -> Observed:
    """SIGTERM to the driver alone (what ``timeout``, ``kill`` or a container's stop send),
    one slot and three trials: it ends as Ctrl-C does (exit 130, the resume command, runs
    KILLED, not RUNNING); then ``--resume`` finishes."""
    sweep = Sweep(root, "sigterm", 3, epochs)
    driver = sweep.start("--max-concurrent", "1")
    wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
    os.kill(driver.pid, signal.SIGTERM)
    first = finish(driver)
    observed = Observed("SIGTERM to the driver", "exit 130 + resume command, then 0", [first])
    if "spectral-sweep sweep --resume --name" not in driver.output():
        observed.notes.append("no resume command printed")
    observed.notes.append(statuses(sweep))
    reap_group(driver)  # whatever Ray left (nothing, when the driver stopped it)
    observed.exit_codes.append(finish(sweep.start(resume=True)))
    return check_record(sweep, observed)


def store_outage(root: Path, outage: float = 25.0, epochs: int = 4) -> Observed:
    """The MLflow server stopped for ``outage`` seconds (longer than the client's retries)
    while trials train, then restarted: every write lands, nothing twice."""
    server = MlflowServer(root)
    server.start()
    try:
        sweep = Sweep(root, "store-outage", 2, epochs, uri=server.uri)
        driver = sweep.start("--max-concurrent", "2")
        wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
        server.stop()
        time.sleep(outage)
        server.start()
        code = finish(driver)
        return check_record(
            sweep, Observed(f"MLflow server down {outage:.0f} s", "exit 0, no loss", [code])
        )
    finally:
        server.stop()


def store_down_at_the_start(root: Path, outage: float = 15.0, epochs: int = 4) -> Observed:
    """The MLflow server stopped as the sweep starts (before its parent run is made) for
    ``outage`` seconds: the parent run is made once it answers, every trial run under it."""
    server = MlflowServer(root)
    server.start()
    try:
        sweep = Sweep(root, "store-down-at-start", 2, epochs, uri=server.uri)
        driver = sweep.start("--max-concurrent", "2")
        settings = sweep.experiment_dir / "spectral_sweep.json"
        wait_for(settings.exists, 120, "the sweep's settings", driver)
        server.stop()
        time.sleep(outage)
        server.start()
        code = finish(driver)
        expected = "exit 0, parent run made"
        return check_record(sweep, Observed(f"MLflow down {outage:.0f} s at the start", expected,
                                            [code]))  # fmt: skip
    finally:
        server.stop()


def store_down_at_the_end(root: Path, epochs: int = 2) -> Observed:
    """The MLflow server down until after the sweep ends: a non-zero exit that says what was
    not written; once it is back, ``--resume`` repairs every run from Tune's results."""
    server = MlflowServer(root)
    server.start()
    try:
        sweep = Sweep(root, "store-down", 2, epochs, uri=server.uri)
        own_tmp = root / "driver-tmp"  # the first driver's temporary folder, watched below
        own_tmp.mkdir()
        ray_tmp = {"RAY_TMPDIR": tempfile.gettempdir()}  # Ray's socket paths stay short
        driver = sweep.start(
            "--max-concurrent", "2", "--tracking-flush-seconds", "5",
            env={"TMPDIR": str(own_tmp), **ray_tmp},
        )  # fmt: skip
        wait_for(lambda: sweep.results() >= 1, 240, "a first result", driver)
        server.stop()
        first = finish(driver)
        left = list(own_tmp.glob("spectral-sweep-artifacts-*"))
        unclosed = open_runs(root / "server.db")  # their closing writes (and copies) were lost
        server.start()
        second = finish(sweep.start(resume=True))
        observed = Observed(
            "MLflow server down at the end", "exit 1 (writes lost), then resume 0", [first, second]
        )
        # the copies of checkpoint files the lost writes would have logged go with the driver
        observed.notes.append(f"runs the first driver could not close: {unclosed}")
        observed.notes.append(f"artifact copies the first driver left: {len(left)}")
        return check_record(sweep, observed)
    finally:
        server.stop()


def open_runs(database: Path) -> int:
    """Trial runs still RUNNING in an (offline) MLflow server's SQLite store."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{database}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if r.data.tags.get("spectral_sweep.role") == "trial"]
    return sum(r.info.status == "RUNNING" for r in trials)


def two_new_stores(root: Path, rounds: int = 3) -> Observed:
    """Two processes opening one new SQLite store at the same moment (as two sweeps starting
    together do): both create their experiment, neither trips on the schema."""
    codes: list[int] = []
    script = (
        "import sys, time; from orchestrator import store; "
        "t = float(sys.argv[3]); time.sleep(max(0.0, t - time.time())); "
        "c = store.make_client(sys.argv[1]); store.ensure_experiment(c, sys.argv[2], sys.argv[1])"
    )
    failures = 0
    for i in range(rounds):
        uri = f"sqlite:///{(root / f'new-{i}.db').resolve()}"
        at = str(time.time() + 4.0)
        procs = [
            subprocess.Popen([sys.executable, "-c", script, uri, name, at], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name in ("first", "second")
        ]  # fmt: skip
        for proc in procs:
            _out, _ = proc.communicate(timeout=120)
            codes.append(proc.returncode)
            failures += proc.returncode != 0
    observed = Observed("two sweeps create one new store", "every exit 0", codes)
    observed.runs = observed.finished = 0
    observed.lost = failures
    return observed


__all__ = [
    "MlflowServer",
    "Observed",
    "Sweep",
    "check_record",
    "driver_killed",
    "interrupted",
    "store_down_at_the_end",
    "store_outage",
    "two_new_stores",
    "worker_killed",
]
