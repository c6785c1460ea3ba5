"""The FLOPs disk cache: a count is made once per key and machine, read back by other
processes without building a network, keyed by everything that changes it, and safe when many
processes write it at once."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from trainables import flops, flops_cache

ARGS = ("dan", "resnet18", 33, 3)


def forget_in_process() -> None:
    flops._REPORTS.clear()


def test_a_count_is_stored_once_and_read_without_a_network(
    fresh_flops_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget_in_process()
    counted = flops.grid_flops(*ARGS, [9, 5])
    files = sorted(fresh_flops_cache.rglob("*.json"))
    assert len(files) == 2
    forget_in_process()

    def no_network(*args: object) -> None:
        raise AssertionError("a cached count built a network")

    monkeypatch.setattr(flops, "_counting_net", no_network)
    assert flops.grid_flops(*ARGS, [9, 5]) == counted
    with pytest.raises(AssertionError, match="built a network"):
        flops.grid_flops(*ARGS, [7])  # another LRG is another key


def test_another_process_reads_the_count(fresh_flops_cache: Path) -> None:
    forget_in_process()
    counted = flops.grid_flops(*ARGS, [5])[5]
    code = (
        "import json; from trainables import flops\n"
        "flops._counting_net = lambda *a: (_ for _ in ()).throw(SystemExit('built'))\n"
        f"print(json.dumps(flops.grid_flops(*{ARGS!r}, [5])[5].as_dict()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == counted.as_dict()


def test_keys_cover_what_changes_a_count(
    fresh_flops_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ("dan", "resnet18", 3, 16, 0.0, 0.0, 33, "compact", 5)
    flops_cache.store(key, {"gflops": 1.0})
    assert flops_cache.load(key) == {"gflops": 1.0}
    for changed in (
        ("dan", "resnet18", 3, 16, 0.3, 0.0, 33, "compact", 5),  # prune rate
        ("dan", "resnet18", 3, 16, 0.0, 0.0, 33, "paper", 5),  # convention
        ("deeplabv3plus", "resnet18", 3, 16, 0.0, 0.0, 33, "compact", 5),  # model
        ("dan", "resnet18", 4, 16, 0.0, 0.0, 33, "compact", 5),  # classes
    ):
        assert flops_cache.load(changed) is None
    monkeypatch.setattr(flops_cache, "code_version", lambda: "other-code")
    assert flops_cache.load(key) is None  # counting code changed: not the same count
    monkeypatch.setenv(flops_cache.CACHE_ENV, "off")
    flops_cache.store(key, {"gflops": 2.0})
    assert flops_cache.load(key) is None


def _write_many(folder: str, n: int) -> None:
    import os

    os.environ[flops_cache.CACHE_ENV] = folder
    key = ("dan", "resnet18", 3, 16, 0.0, 0.0, 33, "compact", 9)
    for i in range(n):
        flops_cache.store(key, {"gflops": 1.5, "params": 1000 + i % 2, "pad": "x" * 20000})


def test_concurrent_writers_never_leave_half_a_file(fresh_flops_cache: Path) -> None:
    key = ("dan", "resnet18", 3, 16, 0.0, 0.0, 33, "compact", 9)
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_many, args=(str(fresh_flops_cache), 150)) for _ in range(3)
    ]
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        got = flops_cache.load(key)
        if got is not None:
            assert got["gflops"] == 1.5 and len(got["pad"]) == 20000  # whole, never partial
            reads += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reads > 0 and flops_cache.load(key) is not None
    assert not list(fresh_flops_cache.rglob(".flops-*"))  # no temporary files left
