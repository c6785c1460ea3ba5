"""Trial checkpoints: save, read, load and restore, the init band profile, the architecture check.

A checkpoint (``checkpoint.pt`` in the trial's directory) holds the weights, optimizer, schedule,
epoch and RNG state, the trial's config (``TrialConfig.to_dict``) and what its architecture must
match, plus the band profile at initialisation so a resumed trial reports it without recomputing
it from trained weights. Files are read with ``weights_only=True``; a bad file is one
:class:`~trainables.errors.InputError` naming it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.owned_folders import owned_prefix, remove_stale
from trainables.run_schema import Artifact

CHECKPOINT_FILE = Artifact.CHECKPOINT_PT
#: Checkpoint key of the init band profile (a float64 tensor), so a resumed trial reuses it.
_INIT_PROFILE_KEY = "band_profile_init"


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file at ``path``: the file itself, or :data:`CHECKPOINT_FILE` in a directory."""
    path = Path(path)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def check_checkpoint_dir(path: str | Path, label: str = "checkpoint_dir") -> Path:
    """``path`` as a directory checkpoints can be written to (and resumed from), checked before
    any training: it is a directory or can be created as one, and a ``checkpoint.pt`` in it is
    a file. Nothing is created here. ``label`` names the setting in the message."""
    given = str(path)
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{label} {given!r} is a file; expected a directory to write {CHECKPOINT_FILE} into"
        )
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not path.exists() and not existing.is_dir():
        raise InputError(f"{label} {given!r} cannot be created: {str(existing)!r} is a file")
    writable = path if path.exists() else existing
    if not os.access(writable, os.W_OK | os.X_OK):
        raise InputError(f"{label} {given!r}: {str(writable)!r} is not writable")
    file = path / CHECKPOINT_FILE
    if file.exists() and not file.is_file():
        raise InputError(
            f"{label} {given!r}: {str(file)!r} is not a file; expected a trial checkpoint"
        )
    return path


def architecture_key(model: nn.Module, cfg: TrialConfig) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this trial's model."""
    arch = dict(model.architecture())  # type: ignore[operator]
    arch["prune_rate"] = cfg.prune_rate
    arch["decoder_prune_rate"] = cfg.decoder_prune_rate
    return arch


#: Shared memory holds a trial's checkpoint before it is copied to storage (Tune) when it has this
#: much room (a Docker container's default 64 MiB would not hold one); else the temp dir.
SCRATCH_MIN_FREE = 4 << 30


def scratch_dir() -> str | None:
    """Where a trial writes each checkpoint for Tune to copy: ``/dev/shm`` when it has
    :data:`SCRATCH_MIN_FREE` bytes free, so the write costs memory bandwidth and the disk
    sees the checkpoint once (the copy), not twice; None (the system temp dir) otherwise."""
    shm = "/dev/shm"
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    roomy = stat.f_bavail * stat.f_frsize >= SCRATCH_MIN_FREE
    return shm if roomy and os.access(shm, os.W_OK) else None


#: A trial's scratch folder: this prefix, ``<pid namespace>-<pid>-``, then tempfile's part.
SCRATCH_PREFIX = "spectral-sweep-trial-"


def scratch_folder(directory: str | None = None) -> tempfile.TemporaryDirectory[str]:
    """A new scratch folder for one trial's checkpoints (in :func:`scratch_dir`), named by this
    process's pid namespace and pid. A trial process that is killed (out of memory, ``kill -9``,
    a lost node) never removes its folder, and in ``/dev/shm`` that is memory held until the
    machine reboots (a checkpoint or two, 67-133 MB each for the demo's networks), so the
    folders of trial processes that no longer run are removed first (:func:`remove_stale_scratch`).
    ``directory``: instead of :func:`scratch_dir`."""
    where = scratch_dir() if directory is None else directory
    remove_stale_scratch(where)
    return tempfile.TemporaryDirectory(prefix=owned_prefix(SCRATCH_PREFIX), dir=where)


def remove_stale_scratch(directory: str | None = None) -> list[Path]:
    """Remove the scratch folders in ``directory`` (default: the system temp dir) whose trial
    process no longer runs; the removed paths (:func:`trainables.owned_folders.remove_stale`)."""
    return remove_stale(directory, SCRATCH_PREFIX)


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    cfg: TrialConfig,
    epoch: int,
    *,
    band_profile_init: torch.Tensor | None = None,
) -> Path:
    """Write model, optimizer, schedule, epoch and RNG state atomically to ``directory``.

    After the last epoch only the weights are written (with the epoch, config and profile):
    nothing trains from there again, and the optimizer's momentum would double the file (a
    ResNet-18 DeepLab v3+: 67 MB instead of 133). ``band_profile_init``: the trial's profile at
    initialisation, kept so a resumed trial reports it without recomputing it from trained
    weights.
    """
    directory.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "architecture": architecture_key(model, cfg),
        "config": cfg.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
    }
    if epoch < cfg.epochs - 1:
        state.update(
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng_cpu=torch.get_rng_state(),
            rng_cuda=_cuda_rng_states(model),
        )
    if band_profile_init is not None:
        state[_INIT_PROFILE_KEY] = band_profile_init.detach().to("cpu", torch.float64)
    tmp = directory / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(directory / CHECKPOINT_FILE)
    return directory


def read_checkpoint(file: Path) -> dict[str, Any]:
    """A checkpoint's state (``weights_only=True``), or an InputError naming the file."""
    if not file.is_file():
        raise InputError(f"checkpoint {file} does not exist")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types; torch's text advises
        if isinstance(err, OSError) and err.strerror:  # unsafe loading: never shown
            raise InputError(f"checkpoint {file} cannot be read ({err.strerror})") from None
        raise InputError(
            f"checkpoint {file} is not a loadable trial checkpoint (not a torch.save file of "
            "tensors and plain values); expected the checkpoint.pt a trial writes"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise InputError(f"checkpoint {file} is not a spectral-sweep trial checkpoint")
    return state


def checkpoint_config(
    state: dict[str, Any], overrides: dict[str, Any] | None = None
) -> TrialConfig:
    """The TrialConfig a read checkpoint was written with (``overrides`` applied on top).

    The checkpoint's config is the plain dict of :meth:`TrialConfig.to_dict`: this is the one
    place it turns back into a config (the checkpoint edge, like Ray's dict and MLflow params).
    """
    return TrialConfig.from_dict({**state["config"], **(overrides or {})})


def load_checkpoint(path: Path, model: nn.Module, cfg: TrialConfig) -> dict[str, Any]:
    """Read a checkpoint (a file, or a directory holding one) into ``model``; its state."""
    file = checkpoint_file(path)
    state = read_checkpoint(file)
    apply_checkpoint(state, file, model, cfg)
    return state


def apply_checkpoint(state: dict[str, Any], file: Path, model: nn.Module, cfg: TrialConfig) -> None:
    """Load a read checkpoint's weights after checking it matches the model's architecture."""
    expected = architecture_key(model, cfg)
    if state.get("architecture") != expected:
        raise InputError(
            f"checkpoint {file} is for architecture {state.get('architecture')}, "
            f"not this trial's {expected}"
        )
    model.load_state_dict(state["model"])


def check_same_trial(state: dict[str, Any], file: Path, cfg: TrialConfig) -> None:
    """Resuming continues the trial a checkpoint holds: settings that train something else
    (learning rate, data set, LRG, epochs, ...) would report its weights under theirs. Run-only
    settings (threads, device, evaluation cadence) and where the data lie may differ."""
    saved = _experiment(checkpoint_config(state))
    mine = _experiment(cfg)
    differs = [k for k in sorted(mine.keys() | saved.keys()) if mine.get(k) != saved.get(k)]
    if differs:
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {mine.get(k)!r} here" for k in differs[:3])
        raise InputError(
            f"checkpoint {file} holds a trial with other settings ({shown}); resume it with its "
            "own settings, or pass another checkpoint folder"
        )


def _experiment(cfg: TrialConfig) -> dict[str, Any]:
    """``cfg.experiment_settings()`` less where the data lie (the same data may move)."""
    settings = cfg.experiment_settings()
    settings.pop("data_root", None)
    return settings


def restore_training_state(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    cfg: TrialConfig,
) -> int:
    """Restore optimizer, schedule and RNG; returns the epoch to continue from. A final
    checkpoint (weights only) continues nowhere: its trial has trained its last epoch."""
    epoch = int(state["epoch"])
    if "optimizer" not in state:
        if epoch < cfg.epochs - 1:
            raise InputError(
                f"checkpoint of epoch {epoch} holds weights only (a finished trial's); "
                f"it cannot continue training to epochs={cfg.epochs}"
            )
        return epoch + 1
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    device = _param_device(optimizer)
    if device.type == "cuda" and state["rng_cuda"]:
        torch.cuda.set_rng_state(state["rng_cuda"][0], device)
    return epoch + 1


def _cuda_rng_states(model: nn.Module) -> list[torch.Tensor]:
    """The random state of the GPU the trial trains on, as a one-element list (empty on the
    CPU). Only that GPU's: every visible GPU's state would create a CUDA context on each of
    them (from a CPU trial too), and a trial resumed where fewer GPUs are visible could not
    restore them. Checkpoints written before kept every visible GPU's state, the trial's first."""
    device = next(model.parameters()).device
    return [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []


def _param_device(optimizer: torch.optim.Optimizer) -> torch.device:
    """Where the optimizer's parameters (the model) live."""
    return optimizer.param_groups[0]["params"][0].device


def holds_last_epoch(path: str | Path, cfg: TrialConfig) -> bool:
    """Whether the checkpoint at ``path`` (a file, or a directory holding one) was written after
    ``cfg``'s last epoch: its trial has trained, evaluated and reported everything."""
    return int(read_checkpoint(checkpoint_file(path))["epoch"]) >= cfg.epochs - 1


def checkpoint_init_profile(state: dict[str, Any]) -> torch.Tensor | None:
    """The init profile a checkpoint holds; None for one written before it was kept."""
    value = state.get(_INIT_PROFILE_KEY)
    return value.to(torch.float64) if isinstance(value, torch.Tensor) else None


__all__ = [
    "CHECKPOINT_FILE",
    "SCRATCH_PREFIX",
    "apply_checkpoint",
    "architecture_key",
    "check_checkpoint_dir",
    "check_same_trial",
    "checkpoint_config",
    "checkpoint_file",
    "checkpoint_init_profile",
    "holds_last_epoch",
    "load_checkpoint",
    "read_checkpoint",
    "remove_stale_scratch",
    "restore_training_state",
    "save_checkpoint",
    "scratch_dir",
    "scratch_folder",
]
