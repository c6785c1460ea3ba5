"""The CE band profile of an untrained network on synthetic evaluation data, computed once.

A trial's ``band_profile_init`` (paper Fig. 1, "init") is one spectrum-only pass of its
untrained network over the evaluation set. It depends on the network's initial weights
(:func:`trainables.trial_setup.network_key`: constructor, backbone, classes, RNG state), on the
evaluation data and LRG and on how the pass runs (batch, device, threads), never on what only
training uses (learning rate, epochs, pruning, block-wise labels: :data:`TRAINING_ONLY`). A
sweep's trials share few of them (the demo's 32 trainings: 16), so each is kept on disk under
``init-profiles/`` of the user's cache (:mod:`trainables.disk_cache`), named by its key and by
the code that makes it, and read by every trial, worker and later sweep that needs it.

Only for the built-in models on synthetic data: a data set on disk, or a model registered from
elsewhere, can change under the same name; those trials make the pass every time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.disk_cache import cache_folder, key_path, read_json, source_version, write_json
from trainables.model_registry import MODEL_NAMES

#: Bump when a profile's meaning changes in a way the source hash cannot see.
FORMAT = 1
#: Settings that act only after the pass (training, pruning, what the final evaluation adds).
TRAINING_ONLY = frozenset(
    {
        "prune_rate",
        "decoder_prune_rate",
        "annotation_nu_max",
        "epochs",
        "lr",
        "momentum",
        "weight_decay",
        "poly_power",
        "eval_every",
        "truncation",
        "eval_lrgs",
        "boundary_width",
        "flops_convention",
    }
)
#: Modules whose source decides a profile (networks, data, spectrum, the pass itself).
_MODULES = (
    "trainables.models",
    "trainables.data",
    "trainables.spectral",
    "trainables.trial",
    "trainables.trial_setup",
    "trainables.config",
    "trainables.init_profiles",
)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the code that makes a profile and of the torch and timm versions."""
    return source_version(_MODULES, ("torch", "timm"), FORMAT)


def _device(device: torch.device) -> str:
    """The device as far as it changes the arithmetic: the GPU's name, the CPU's kernels."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{torch.backends.cpu.get_cpu_capability()}"


def profile_key(cfg: TrialConfig, network: tuple[Any, ...] | None, device: torch.device) -> Any:
    """The key of ``cfg``'s init profile, or None when it is not kept (pretrained weights, a data
    set on disk, a model that is not built in)."""
    if network is None or not cfg.dataset.startswith("synthetic") or cfg.model not in MODEL_NAMES:
        return None
    _constructor, backbone, classes, rng = network
    settings = {
        k: v for k, v in cfg.to_dict().items() if k not in TRAINING_ONLY and k != "device"
    }  # the device it runs on, below
    return [backbone, classes, rng, settings, _device(device), code_version()]


def _path(key: Any) -> Path | None:
    return None if key is None else key_path(cache_folder("init-profiles"), key)


def load(key: Any) -> torch.Tensor | None:
    """The stored profile of ``key`` (float64, on the CPU), or None."""
    values = read_json(_path(key))
    if not isinstance(values, list) or not values:
        return None
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def store(key: Any, profile: torch.Tensor) -> None:
    """Keep ``profile`` for ``key`` (nothing when the key is None or the cache is off)."""
    write_json(_path(key), [float(v) for v in profile.tolist()], temporary_prefix=".init-")


__all__ = ["FORMAT", "TRAINING_ONLY", "code_version", "load", "profile_key", "store"]
