"""What MLflow's own UI shows beside a run: its source tags and its data set (no Ray, no client).

- :func:`source_tags`: ``mlflow.source.name`` (the tool), ``mlflow.source.type``, ``mlflow.user``
  and ``mlflow.source.git.commit`` of the working directory when it is a repository, as MLflow's
  own runs carry them;
- :func:`dataset_input`: the trial's data set as an MLflow dataset input (the UI's Dataset
  column): its name, where it is read from (the data root, or the generator and seed of a
  synthetic set), and a digest of what selects the images.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from typing import TYPE_CHECKING

from trainables.run_schema import MlflowTag

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

    from trainables.config import TrialConfig


@functools.lru_cache(maxsize=1)
def source_tags() -> dict[str, str]:
    """MLflow's source tags for the runs this process writes."""
    import getpass
    import subprocess

    tags = {MlflowTag.SOURCE_NAME: "spectral-sweep", MlflowTag.SOURCE_TYPE: "LOCAL"}
    with contextlib.suppress(Exception):  # no user name in this environment
        tags[MlflowTag.USER] = getpass.getuser()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if commit.returncode == 0 and commit.stdout.strip():
            tags[MlflowTag.GIT_COMMIT] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


def dataset_input(config: TrialConfig) -> DatasetInput:
    """The trial's data set as MLflow's ``DatasetInput`` (context ``training``)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    synthetic = config.dataset.startswith("synthetic")
    source = f"synthetic:seed={config.seed}" if synthetic else str(config.data_root or "")
    selection = json.dumps(
        [config.dataset, source, config.input_size, config.train_length, config.eval_length],
        default=str,
    )
    dataset = Dataset(
        name=config.dataset,
        digest=hashlib.sha256(selection.encode()).hexdigest()[:12],
        source_type="synthetic" if synthetic else "local",
        source=json.dumps({"uri": source}),
    )
    return DatasetInput(
        dataset=dataset, tags=[InputTag(key="mlflow.data.context", value="training")]
    )


__all__ = ["dataset_input", "source_tags"]
