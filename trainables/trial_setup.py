"""The pieces a trial is wired from: device, seeding, data, network, optimizer, loaders, pruner.

Each is a small function of a validated :class:`~trainables.config.TrialConfig`;
:func:`trainables.trial.run_trial` (and post-hoc evaluation, benchmarks, the SpG command) call
them in order.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from trainables.config import TrialConfig
from trainables.errors import InputError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch's CPU and CUDA generators (data order, augmentation, weights all use them)."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


#: ``build_dataset``'s own arguments, which a trial sets itself (not data-set options).
RESERVED_OPTIONS = frozenset({"root", "split", "input_size", "augment", "num_classes", "seed"})


def build_split(cfg: TrialConfig, split: str, length: int | None, augment: bool) -> Any:
    """One split of the trial's data set as the trial reads it (a synthetic set generated at
    ``length``; a real one read whole, ``build_datasets`` limits it)."""
    from trainables.data import build_dataset

    options = dict(cfg.extra)
    reserved = sorted(set(options) & RESERVED_OPTIONS)
    if reserved:
        raise InputError(
            f"data-set option {reserved[0]!r} (in extra) is the trial's own setting; the trial "
            "reads splits 'train' and 'val' (voc: option train_split picks the training list)"
        )
    if cfg.dataset.startswith("synthetic") and length is not None:
        options["length"] = length
    return build_dataset(
        cfg.dataset,
        root=cfg.data_root,
        split=split,
        input_size=cfg.input_size,
        augment=augment,
        num_classes=cfg.num_classes,
        seed=cfg.seed,
        **options,
    )


def build_datasets(cfg: TrialConfig) -> tuple[Dataset[Any], Dataset[Any], int]:
    """The training and evaluation sets and the class count, checked against the config."""

    def make(split: str, length: int | None, augment: bool) -> Any:
        synthetic = cfg.dataset.startswith("synthetic")
        dataset = build_split(cfg, split, length, augment)
        if not synthetic and length is not None and length < len(dataset):
            return _limited(dataset, length)
        return dataset

    train_set = make("train", cfg.train_length, augment=True)
    eval_set = make("val", cfg.eval_length, augment=False)
    if len(train_set) < 2:
        raise InputError(
            f"data set {cfg.dataset!r} has {len(train_set)} training image(s); BatchNorm needs "
            "at least 2 per batch"
        )
    num_classes = int(_base(train_set).num_classes)
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise InputError(
            f"num_classes={cfg.num_classes} disagrees with data set {cfg.dataset!r}, "
            f"which has {num_classes} classes"
        )
    return train_set, eval_set, num_classes


def _limited(dataset: Any, length: int) -> Subset[Any]:
    subset = Subset(dataset, range(length))
    subset.num_classes = dataset.num_classes  # type: ignore[attr-defined]
    return subset


def _base(dataset: Any) -> Any:
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def build_network(
    cfg: TrialConfig, num_classes: int, device: torch.device, *, from_checkpoint: bool = False
) -> nn.Module:
    """The model at the config's training LRG, on ``device`` (channels_last on CUDA).

    ``from_checkpoint``: a checkpoint will overwrite every weight, so pretrained weights are not
    loaded (a resumed or re-evaluated trial needs no network and no weights file).
    """
    from trainables.models import validate_lrg

    model = untrained_network(
        cfg, num_classes, initial_weights(cfg, from_checkpoint=from_checkpoint)
    )
    native = model.native_grid(cfg.input_size)
    if native != cfg.native_lrg:
        raise InputError(
            f"backbone {cfg.backbone!r} gives a {native} x {native} stride-4 grid at input size "
            f"{cfg.input_size}, not the {cfg.native_lrg} x {cfg.native_lrg} the config assumes"
        )
    for s in (cfg.lrg, *cfg.eval_lrgs):
        if s is not None:
            validate_lrg(s, native)
    model.lrg = cfg.train_lrg
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def initial_weights(cfg: TrialConfig, *, from_checkpoint: bool = False) -> bool | str:
    """Where a network's first weights come from: False (random, also when a checkpoint will
    overwrite them), True (timm hub) or a weights file."""
    if from_checkpoint:
        return False
    return {"false": False, "true": True}.get(cfg.pretrained, cfg.pretrained)


def network_key(
    cfg: TrialConfig, num_classes: int, pretrained: bool | str
) -> tuple[Any, str, int, str] | None:
    """What decides a randomly initialised network's weights: its constructor, backbone, class
    count and the CPU RNG state now (a digest); None for pretrained weights."""
    from trainables.models import model_class

    if pretrained is not False:
        return None
    rng = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()
    return (model_class(cfg.model), cfg.backbone, num_classes, rng)


#: Untrained networks one process keeps (the most recently used) for its next trials.
KEPT_NETWORKS = 2
_NETWORKS: OrderedDict[tuple[Any, ...], tuple[Any, torch.Tensor]] = OrderedDict()


def untrained_network(cfg: TrialConfig, num_classes: int, pretrained: bool | str) -> Any:
    """The config's network with its initial weights, on the CPU, decoder grid unset.

    Tune runs many trials in one worker process (``reuse_actors``), and a sweep's trials share a
    few networks: random initial weights are a function of :func:`network_key` alone, so a
    network this process built before for the same key is copied rather than built again (a
    quarter of a second of a demo trial), and the RNG is left where that build left it:
    everything after draws the same numbers as after a build. Pretrained weights are read from
    their file each time. The kept network is never handed out; its native grid at the input
    size is worked out once, before the copy.
    """
    from trainables.models import build_model

    key = network_key(cfg, num_classes, pretrained)
    if key is None:
        return build_model(
            cfg.model, backbone=cfg.backbone, num_classes=num_classes, pretrained=pretrained
        )
    kept = _NETWORKS.get(key)
    if kept is None:
        built = build_model(cfg.model, backbone=cfg.backbone, num_classes=num_classes)
        kept = _NETWORKS[key] = (built, torch.get_rng_state())
        while len(_NETWORKS) > KEPT_NETWORKS:
            _NETWORKS.popitem(last=False)
    else:
        _NETWORKS.move_to_end(key)
        torch.set_rng_state(kept[1])
    kept[0].native_grid(cfg.input_size)
    return copy.deepcopy(kept[0])


def build_optimizer(
    model: nn.Module, cfg: TrialConfig, iterations: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with momentum and the poly learning-rate schedule (per iteration, as in DeepLab)."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    total = max(1, iterations)

    def poly(step: int) -> float:
        return max(0.0, 1.0 - step / total) ** cfg.poly_power

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, poly)


#: Loader worker processes of a GPU trial when the config leaves ``loader_workers`` unset.
GPU_LOADER_WORKERS = 4


def loader_workers(cfg: TrialConfig, device: torch.device | None) -> int:
    """``cfg.loader_workers``, else 4 on a GPU (measured: without workers a 513 x 513 GPU
    trial spends 92 % of its step making images on the CPU) and 0 on the CPU (the trials
    already fill the cores)."""
    if cfg.loader_workers is not None:
        return cfg.loader_workers
    on_gpu = device is not None and device.type == "cuda"
    return min(GPU_LOADER_WORKERS, os.cpu_count() or 1) if on_gpu else 0


def make_loader(
    dataset: Dataset[Any], cfg: TrialConfig, *, train: bool, device: torch.device | None = None
) -> DataLoader[Any]:
    """The trial's loader: the training order comes from a generator seeded by the config (and
    with worker processes, each worker's augmentation from a seed drawn from it); pinned
    memory on a GPU. The evaluation loader has its own generator too: a loader without one
    draws its seed from the global RNG on every pass, so how often a trial evaluates
    (``eval_every``, a run-only setting) would change the dropout masks it trains with.

    The training loader's workers start anew each epoch: a DataLoader draws its workers' seed
    from the generator when it starts them, and the trial reseeds the generator per epoch
    (``trial._reseed_order``), so epoch k draws the same order and augmentation whether the
    trial ran through or resumed at k. Persistent workers would keep epoch 0's streams (not in
    any checkpoint) and make a resumed trial differ. The evaluation loader draws nothing, so
    its workers persist. The worker count itself changes the augmentation draws (one stream
    per worker, as in any DataLoader)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    workers = loader_workers(cfg, device)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=train,
        drop_last=train and _last_batch(len(dataset), cfg.batch_size) == 1,  # type: ignore[arg-type]
        generator=generator,
        num_workers=workers,
        persistent_workers=workers > 0 and not train,  # see above
        pin_memory=device is not None and device.type == "cuda",
    )


def _last_batch(length: int, batch_size: int) -> int:
    """Size of the last batch of an epoch (a last batch of 1 cannot train BatchNorm)."""
    return length % batch_size or batch_size


def autocast(device: torch.device, amp: bool) -> Any:
    """bf16 autocast on CUDA when ``amp``; a no-op context elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_device(
    batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device``: images channels_last on CUDA, labels as int64."""
    images, labels = batch
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True).long()


def build_pruner(model: nn.Module, cfg: TrialConfig) -> Any:
    """The soft filter pruner of ``cfg``'s rates, or None when nothing is pruned."""
    if cfg.prune_rate == 0 and cfg.decoder_prune_rate == 0:
        return None
    from trainables.pruning import SoftFilterPruner

    return SoftFilterPruner(model, cfg.prune_rate, cfg.decoder_prune_rate)


__all__ = [
    "autocast",
    "build_datasets",
    "build_network",
    "build_optimizer",
    "build_pruner",
    "initial_weights",
    "loader_workers",
    "make_loader",
    "network_key",
    "resolve_device",
    "seed_everything",
    "to_device",
    "untrained_network",
]
