"""``sweep --log-model``: each finished trial's final network as an MLflow model of its run.

The driver writes it (trials never write to the store): the network is rebuilt from the
trial's last checkpoint (its config and architecture travel inside it), its weights loaded, and
``mlflow.pytorch.log_model`` records it as a logged model linked to the run (the UI's Models
column; ``mlflow.pytorch.load_model(f"runs:/{run_id}/model")`` or ``models:/<model_id>`` loads
it). Off by default: a paper-size network is ~250 MB per trial.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The model's name in its run (``runs:/<run_id>/model``).
MODEL_NAME = "model"
_URI_LOCK = threading.Lock()


@contextlib.contextmanager
def _logging_to(uri: str, run_id: str) -> Iterator[None]:
    """MLflow's global tracking URI and experiment set to the run's while logging
    (``log_model`` files the logged model under them), put back afterwards."""
    import mlflow
    from mlflow.tracking import fluent

    with _URI_LOCK:
        before = mlflow.get_tracking_uri()
        experiment = getattr(fluent, "_active_experiment_id", None)
        mlflow.set_tracking_uri(uri)
        try:
            run = mlflow.MlflowClient(uri).get_run(run_id)
            setattr(fluent, "_active_experiment_id", run.info.experiment_id)  # noqa: B010
            yield
        finally:
            setattr(fluent, "_active_experiment_id", experiment)  # noqa: B010
            mlflow.set_tracking_uri(before)


def trial_network(checkpoint: Path) -> tuple[Any, Any]:
    """The trial's network with the checkpoint's weights (CPU, eval mode) and its config."""
    import torch

    from trainables.checkpoint import (
        apply_checkpoint,
        checkpoint_config,
        checkpoint_file,
        read_checkpoint,
    )
    from trainables.trial_setup import build_network

    file = checkpoint_file(checkpoint)
    state = read_checkpoint(file)
    cfg = checkpoint_config(state, {"device": "cpu"})
    classes = int(state["architecture"]["num_classes"])
    model = build_network(cfg, classes, torch.device("cpu"), from_checkpoint=True)
    apply_checkpoint(state, file, model, cfg)
    return model.eval(), cfg


def _signature(input_size: int, num_classes: int) -> Any:
    """Images (N, 3, S, S) float32 in, logits (N, C, S, S) out."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, input_size, input_size))]),
        outputs=Schema(
            [TensorSpec(np.dtype(np.float32), (-1, num_classes, input_size, input_size))]
        ),
    )


def _requirements() -> list[str]:
    """What loading the model needs (given, so MLflow does not infer them in a subprocess)."""
    from importlib import metadata

    out = []
    for dist in ("torch", "timm", "spectral-sweep"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out.append(f"{dist}=={metadata.version(dist)}")
    return out


def log_trial_model(tracking_uri: str, run_id: str, checkpoint: Path) -> str:
    """Log the checkpoint's network as ``model`` of ``run_id``; returns MLflow's model id."""
    import mlflow.pytorch

    model, cfg = trial_network(checkpoint)
    import logging

    # pickle is chosen on purpose (pt2 needs a traced example); MLflow warns about it each time
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    with _logging_to(tracking_uri, run_id):
        info = mlflow.pytorch.log_model(
            model,
            name=MODEL_NAME,
            run_id=run_id,
            serialization_format="pickle",  # MLflow's default "pt2" needs a traced example
            signature=_signature(cfg.input_size, int(model.num_classes)),
            pip_requirements=_requirements(),
        )
    return str(info.model_id)


__all__ = ["MODEL_NAME", "log_trial_model", "trial_network"]
