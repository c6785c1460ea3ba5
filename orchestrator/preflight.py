"""Pre-flight checks of a sweep, all before Ray starts: name, storage, data roots, tracking URI,
Ray address, resources, and that a new sweep does not mix into an experiment that holds runs.

``spectral-sweep sweep`` and ``spectral-sweep demo`` both call :func:`check_new_sweep` or
:func:`check_resumed_sweep` on the :class:`~orchestrator.settings.SweepSettings` they built.
No Ray import here; MLflow is opened only to look for existing runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.address import check_address
from orchestrator.uris import check_tracking_uri, is_local_uri, sqlite_path
from trainables.dataset_registry import dataset_spec
from trainables.errors import InputError
from trainables.run_schema import Strategy
from trainables.weights_file import check_weights_file

if TYPE_CHECKING:
    from orchestrator.settings import SweepSettings
    from trainables.config import TrialConfig

#: Tune's marker that a directory holds a restorable experiment.
TUNER_STATE_FILE = "tuner.pkl"


def sweep_exists(experiment_path: Path) -> bool:
    """Whether ``<storage>/<name>`` holds a Tune experiment (one ``--resume`` can continue)."""
    return (experiment_path / TUNER_STATE_FILE).exists()


def check_name(name: str) -> None:
    """A sweep name is a directory name and an MLflow experiment name."""
    if not name or "/" in name or name in {".", ".."} or name.strip() != name:
        raise InputError(f"--name {name!r} is not a valid sweep name (no '/', no blanks at ends)")


def check_storage(storage: str) -> Path:
    """The storage directory, resolved once: a directory, or one that can be created under a
    writable one. Nothing is created here (a refused sweep leaves no empty directory); the
    sweep creates it when it starts."""
    if "://" in storage:
        raise InputError(
            f"--storage {storage!r}: only filesystem paths are supported here (mount the bucket)"
        )
    path = Path(storage).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InputError(f"--storage {storage!r} exists and is not a directory")
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise InputError(f"--storage {storage!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--storage {storage!r} is not writable ({str(existing)!r})")
    return path


def check_data_roots(trials: Sequence[TrialConfig], local: bool) -> None:
    """Real data sets need a data_root; with the embedded Ray it must exist on this machine."""
    for index, config in enumerate(trials):
        dataset = config.dataset
        if not dataset_spec(dataset).needs_root:  # generated data
            continue
        root = config.data_root
        if root in (None, ""):
            raise InputError(
                f"trial {index}: data set {dataset!r} needs a data root; pass "
                f"--data-root {dataset}=PATH"
            )
        if local and not Path(str(root)).expanduser().exists():
            raise InputError(f"trial {index}: data root {root!r} of {dataset!r} does not exist")


def check_tracking(uri: str, address: str | None) -> None:
    """Reachable/writable tracking URI; Ray Client runs the driver remotely, so it needs a server."""
    check_tracking_uri(uri)
    if address is not None and address.startswith("ray://") and is_local_uri(uri):
        raise InputError(
            f"--address {address} runs the sweep's driver on the cluster, which cannot write "
            f"{uri}; pass --tracking-uri http://HOST:PORT of an `mlflow server`"
        )


def check_local_resources(cpus: float, gpus: float) -> None:
    """On the embedded Ray, a trial must fit this machine (else Tune would wait forever)."""
    count = os.cpu_count() or 1
    if cpus > count:
        raise InputError(f"--cpus-per-trial {cpus:g}: this machine has {count} CPUs")
    if gpus > 0:
        import torch

        found = torch.cuda.device_count()
        if gpus > found:
            raise InputError(f"--gpus-per-trial {gpus:g}: this machine has {found} CUDA GPUs")


def check_new_experiment(uri: str, name: str) -> None:
    """A new sweep must not mix its runs into an experiment that already holds some."""
    from orchestrator.store import find_experiment, make_client

    path = sqlite_path(uri)
    if path is not None and not path.exists():
        return  # a new store: nothing to mix with
    client = make_client(uri)
    experiment_id = find_experiment(client, name)
    if experiment_id is not None and client.search_runs([experiment_id], max_results=1):
        raise InputError(
            f"MLflow experiment {name!r} at {uri} already holds runs; choose another --name, "
            "or continue that sweep with --resume"
        )


def check_scheduler(settings: SweepSettings) -> None:
    """ASHA compares trials at their evaluations: trials that evaluate only after their last
    epoch (``eval_every`` of the demo space) give it nothing to stop on."""
    if settings.scheduler != "asha":
        return
    from trainables.config import evaluation_epochs

    space = settings.search_space()
    trials = list(space.trials())
    if any(t.epochs > 1 for t in trials) and all(len(evaluation_epochs(t)) == 1 for t in trials):
        raise InputError(
            f"--scheduler asha compares trials at each evaluation, but every trial of space "
            f"{space.name!r} evaluates only after its last epoch "
            f"(eval_every={trials[0].eval_every}); add --set eval_every=1"
        )


def check_offline(settings: SweepSettings) -> None:
    """The checks of a new sweep that need neither the cluster nor the tracking store (``sweep
    --dry-run`` runs these too): name, scheduler, data roots, and with the embedded Ray the
    weights files and CUDA the trials ask for; the strategy's estimator file."""
    check_name(settings.name)
    check_scheduler(settings)
    trials = settings.search_space().trials()
    check_data_roots(trials, local=settings.address is None)
    check_gpu_share(trials, settings.gpus_per_trial)
    if settings.address is None:
        check_pretrained_files(trials)
        check_devices(trials)
    check_estimator_file(settings)


def check_gpu_share(trials: Sequence[TrialConfig], gpus_per_trial: float) -> None:
    """Trials that ask for ``device: cuda`` need a GPU share from Ray: a trial Ray gives no GPU
    runs on the CPU (``orchestrator.tune.trial_device``), so ``cuda`` with ``--gpus-per-trial
    0`` is refused here rather than in every trial."""
    if gpus_per_trial == 0 and any(t.device == "cuda" for t in trials):
        raise InputError(
            "device 'cuda' (in the space or --set device=cuda) with --gpus-per-trial 0: Ray "
            "gives such trials no GPU; pass --gpus-per-trial 1 (or a share such as 0.5)"
        )


def check_devices(trials: Sequence[TrialConfig]) -> None:
    """With the embedded Ray, trials that ask for ``device: cuda`` need a CUDA device here (else
    every trial would fail once Ray has started; torch is imported only for such a space)."""
    if not any(t.device == "cuda" for t in trials):
        return
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            "device 'cuda' (in the space or --set device=cuda), but this machine has no CUDA "
            "device; use device=cpu or device=auto"
        )


def check_pretrained_files(trials: Sequence[TrialConfig]) -> None:
    """With the embedded Ray, a ``pretrained`` weights path must be a file on this machine (a
    cheap look: each trial reads it; on a cluster the path is the workers')."""
    for path in dict.fromkeys(t.weights_path for t in trials if t.weights_path is not None):
        check_weights_file(path)


def check_estimator_file(settings: SweepSettings) -> None:
    """A strategy planning with ``--estimator FILE`` (not a fit ``--estimator-from``): the file
    must hold an estimator."""
    if settings.strategy == Strategy.EXHAUSTIVE or settings.estimator_from:
        return
    from analysis.estimator import load_estimator

    load_estimator(settings.estimator)


def check_new_sweep(settings: SweepSettings) -> None:
    """Everything a new sweep needs, in the order a user fixes them; the first problem raises."""
    check_offline(settings)
    if sweep_exists(settings.experiment_path):
        raise InputError(
            f"a sweep named {settings.name!r} already exists in {settings.storage}; continue it "
            "with --resume or choose another --name"
        )
    check_tracking(settings.tracking_uri, settings.address)
    check_address(settings.address)
    if settings.address is None:
        check_local_resources(settings.cpus_per_trial, settings.gpus_per_trial)
    check_new_experiment(settings.tracking_uri, settings.mlflow_experiment)


def check_resumed_sweep(settings: SweepSettings) -> None:
    """A resumed sweep keeps its saved settings; its tracking store and Ray must be reachable."""
    check_tracking(settings.tracking_uri, settings.address)
    check_address(settings.address)


__all__ = [
    "TUNER_STATE_FILE",
    "check_data_roots",
    "check_devices",
    "check_estimator_file",
    "check_gpu_share",
    "check_local_resources",
    "check_name",
    "check_new_experiment",
    "check_new_sweep",
    "check_offline",
    "check_pretrained_files",
    "check_resumed_sweep",
    "check_scheduler",
    "check_storage",
    "check_tracking",
    "sweep_exists",
]
