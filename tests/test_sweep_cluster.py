"""A two-node Ray cluster on this machine (head 1 CPU + worker 1 CPU): trials run on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.mlflow_runs import runs_frame
from orchestrator import uris
from orchestrator.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Any]:
    """``ray.cluster_utils.Cluster`` with a 1-CPU head and a 1-CPU worker; the driver joins it."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_trials_run_on_both_nodes(two_nodes: Any, tmp_path: Path) -> None:
    import ray

    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(node_ids) == 2
    uri = uris.default_tracking_uri(tmp_path)
    args = ["sweep", "--space", "smoke", "--address", two_nodes.address, "--quiet"]
    args += ["--storage", str(tmp_path / "runs"), "--tracking-uri", uri]
    assert main(args) == 0
    frame = runs_frame(uri, "smoke")
    frame = frame.loc[frame["tags.spectral_sweep.role"] != "sweep"]  # the sweep's parent run
    assert len(frame) == 4 and set(frame["status"]) == {"FINISHED"}
    assert set(frame["tags.spectral_sweep.node_id"]) == node_ids
