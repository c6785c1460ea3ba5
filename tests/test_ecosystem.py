"""Pieces of the MLflow / Optuna surface that need no sweep: the Pareto front against a
brute-force check, MLflow's system-metric monitors sampled in-process, ``--config`` files and
the flags that go with them (one line, exit 2)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import front_mask, pareto_front
from orchestrator.cli import main


def brute_force_front(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """O(n^2) by the definition: no other point at most as costly and at least as good with one
    of the two strictly better."""
    n = len(cost)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            no_worse = cost[j] <= cost[i] and value[j] >= value[i]
            better = cost[j] < cost[i] or value[j] > value[i]
            if j != i and no_worse and better:
                keep[i] = False
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_front_mask_matches_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    cost = rng.integers(0, 8, n).astype(float)  # few distinct values: many ties
    value = rng.integers(0, 8, n).astype(float) / 8
    assert np.array_equal(front_mask(cost, value), brute_force_front(cost, value))


def test_pareto_front_is_taken_per_data_set() -> None:
    rows = pd.DataFrame(
        {
            "dataset": ["a", "a", "a", "b", "b"],
            "gflops": [1.0, 2.0, 3.0, 10.0, 20.0],
            "miou": [0.5, 0.4, 0.7, 0.1, 0.2],
        }
    )
    front = pareto_front(rows)
    assert front[["dataset", "gflops"]].values.tolist() == [
        ["a", 1.0],
        ["a", 3.0],
        ["b", 10.0],
        ["b", 20.0],
    ]
    pooled = pareto_front(rows, by=None)
    assert pooled["gflops"].tolist() == [1.0, 3.0]  # b's points lose to a's when pooled


def test_system_metrics_sampler_reports_mlflow_names() -> None:
    import psutil

    from orchestrator.system_metrics import SystemMetricsSampler

    sampler = SystemMetricsSampler(interval=0.1)
    try:
        time.sleep(0.5)
        first = sampler.take()
        second = sampler.take()  # a new interval: one fresh sample
    finally:
        sampler.stop()
    assert 0.0 <= first["system/cpu_utilization_percentage"] <= 100.0
    used = psutil.virtual_memory().used / 1e6
    assert first["system/system_memory_usage_megabytes"] == pytest.approx(used, rel=0.5)
    assert "system/disk_usage_percentage" in first and "system/network_receive_megabytes" in first
    assert set(second) == set(first)
    assert not sampler._thread.is_alive()


# --------------------------------------------------------------------- --config and its flags


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_config_file_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fails(capsys, ["sweep", "--config", "missing.yaml"], "missing.yaml", "no such file")
    cases = {
        "spce: smoke\n": "unknown setting 'spce'",
        "space: smoke\ncpus_per_trial: many\n": "cpus_per_trial 'many' is not a valid float",
        "space: smoke\nsearch: random\n": "search 'random' is not one of",
        "space: smoke\nquiet: 3\n": "quiet 3 must be true or false",
        "- a\n- b\n": "expected a mapping",
        "space: [smoke\n": "not valid YAML",
        "space: smoke\nset: 3\n": "set 3 must be a mapping",
        # before: 2 samples, and an unclear "must be a single value"
        "space: smoke\nsearch: optuna\nnum_samples: 2.5\n": "num_samples 2.5 is not a whole number",
        "space: smoke\nsearch: optuna\nnum_samples: true\n": "num_samples True must be a whole",
    }
    for n, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"c{n}.yaml"
        path.write_text(text)
        fails(capsys, ["sweep", "--config", str(path), "--dry-run"], str(path), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"c{n}.yaml" for n in range(9))


def test_optuna_storage_flag_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fails(
        capsys,
        ["sweep", "--space", "smoke", "--optuna-storage", "sqlite:///o.db"],
        "needs --search optuna",
    )
    fails(
        capsys,
        ["sweep", "--space", "smoke", "--search", "optuna", "--optuna-storage", "o.db"],
        "'o.db' is not a database URL",
    )
    assert list(tmp_path.iterdir()) == []


def test_config_values_and_flag_overrides_reach_the_dry_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("space: demo\nset: {epochs: 2, lr: 0.5}\n")
    assert (
        main(["sweep", "--config", "c.yaml", "--space", "smoke", "--set", "lr=0.25", "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert "4 trials" in out  # smoke (the flag), not demo (the file)
    header = next(line for line in out.splitlines() if line.startswith("trials "))
    epochs = header.split().index("epochs")
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit() and "resnet18" in line]
    assert rows and {row[epochs] for row in rows} == {"2"}  # the file's set: applied
