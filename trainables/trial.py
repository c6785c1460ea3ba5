"""One trial: train a segmentation network and evaluate mIoU, boundary IoU, R_ce, FLOPs and FPI.

:func:`run_trial` only wires small pieces (data, model, pruner, optimizer, one epoch, one
evaluation, checkpointing); each piece is a function of its own. It is plain PyTorch: the
orchestrator calls it inside a Ray Tune trial, ``spectral-sweep train`` calls it directly.
Before the first epoch a trial evaluates the CE band profile of its untrained model (spectrum
only); every report's spectrum carries it as column ``band_profile_init`` beside the final one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from trainables.config import TrialConfig, native_band
from trainables.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

CHECKPOINT_FILE = "checkpoint.pt"
#: spectrum.csv column: the band profile ``L_ce[k]`` of the model at initialisation (before the
#: first epoch). Contract with ``analysis.runs.INIT_PROFILE_COLUMN``.
INIT_PROFILE_COLUMN = "band_profile_init"
#: Checkpoint key of that profile (a float64 tensor), so a resumed trial reuses it.
_INIT_PROFILE_KEY = "band_profile_init"


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite: the trial stops with this reason."""


@dataclass
class TrialReport:
    """What a trial reports after each evaluation (the orchestrator forwards it to Tune/MLflow)."""

    epoch: int
    metrics: dict[str, float]
    spectrum: pd.DataFrame
    per_class_iou: list[float]
    checkpoint_path: Path | None
    final: bool


@dataclass
class TrialResult:
    """The outcome of :func:`run_trial`: the last report's metrics plus every report."""

    config: TrialConfig
    metrics: dict[str, float]
    reports: list[TrialReport] = field(default_factory=list)
    posthoc: dict[int, dict[str, float]] = field(default_factory=dict)


ReportFn = Callable[[TrialReport], None]


# --------------------------------------------------------------------------- set-up


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


def build_datasets(cfg: TrialConfig) -> tuple[Dataset[Any], Dataset[Any], int]:
    """The training and evaluation sets and the class count, checked against the config."""
    from trainables.data import build_dataset

    def make(split: str, length: int | None, augment: bool) -> Any:
        options = dict(cfg.extra)
        synthetic = cfg.dataset.startswith("synthetic")
        if synthetic and length is not None:
            options["length"] = length
        dataset = build_dataset(
            cfg.dataset,
            root=cfg.data_root,
            split=split,
            input_size=cfg.input_size,
            augment=augment,
            num_classes=cfg.num_classes,
            seed=cfg.seed,
            **options,
        )
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
    from trainables.models import build_model, validate_lrg

    pretrained: bool | str = {"false": False, "true": True}.get(cfg.pretrained, cfg.pretrained)
    if from_checkpoint:
        pretrained = False
    model = build_model(
        cfg.model,
        backbone=cfg.backbone,
        num_classes=num_classes,
        lrg=None,
        pretrained=pretrained,
    )
    native = model.native_grid(cfg.input_size)
    for s in (cfg.lrg, *cfg.eval_lrgs):
        if s is not None:
            validate_lrg(s, native)
    model.lrg = cfg.train_lrg
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


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


def make_loader(dataset: Dataset[Any], cfg: TrialConfig, *, train: bool) -> DataLoader[Any]:
    """Single-process loader; the training order comes from a generator seeded by the config."""
    generator = torch.Generator().manual_seed(cfg.seed) if train else None
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=train,
        drop_last=train and _last_batch(len(dataset), cfg.batch_size) == 1,  # type: ignore[arg-type]
        generator=generator,
        num_workers=0,
    )


def _last_batch(length: int, batch_size: int) -> int:
    """Size of the last batch of an epoch (a last batch of 1 cannot train BatchNorm)."""
    return length % batch_size or batch_size


# --------------------------------------------------------------------------- train / evaluate


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to_device(
    batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = batch
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True).long()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    cfg: TrialConfig,
    device: torch.device,
    epoch: int,
) -> float:
    """One pass of SGD on CE (ignore 255), on block-wise labels when the config asks for them.

    Returns the mean training loss; a NaN/inf loss raises :class:`TrialDiverged`.
    """
    from trainables.data import blockwise_labels

    model.train()
    total, count = 0.0, 0
    for step, batch in enumerate(loader):
        images, labels = _to_device(batch, device)
        if cfg.uses_blockwise_labels:
            assert cfg.annotation_nu_max is not None
            labels = blockwise_labels(labels, cfg.annotation_nu_max)
        with _autocast(device, cfg.amp):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=255)
        if not torch.isfinite(loss):
            raise TrialDiverged(f"training loss became {loss.item()} at epoch {epoch} step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
        count += 1
    return total / max(count, 1)


@dataclass
class Evaluation:
    """Metrics of one pass over the evaluation set (pixel-wise labels)."""

    loss: float
    metrics: dict[str, Any]
    spectrum: Any  # trainables.spectral.SpectrumAccumulator


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    cfg: TrialConfig,
    device: torch.device,
) -> Evaluation:
    """Loss, mIoU, boundary IoU, pixel accuracy and the CE spectrum over the evaluation set."""
    from trainables.metrics import SegmentationMetrics
    from trainables.spectral import SpectrumAccumulator

    metrics = SegmentationMetrics(num_classes, boundary_width=cfg.boundary_width)
    spectrum = SpectrumAccumulator()
    for logits, labels in _eval_logits(model, loader, cfg, device):
        metrics.update(logits.argmax(dim=1), labels)
        spectrum.update(logits, labels)
    return Evaluation(loss=float(spectrum.total), metrics=metrics.compute(), spectrum=spectrum)


def _eval_logits(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    cfg: TrialConfig,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(float32 logits, labels)`` of every evaluation batch, the model in eval mode (the one
    way every evaluation runs the model; callers hold ``torch.no_grad``)."""
    model.eval()
    for batch in loader:
        images, labels = _to_device(batch, device)
        with _autocast(device, cfg.amp):
            logits = model(images)
        yield logits.float(), labels


@torch.no_grad()
def evaluate_spectrum(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    cfg: TrialConfig,
    device: torch.device,
) -> Any:
    """The CE spectrum alone (a ``SpectrumAccumulator``), computed as :func:`evaluate` does."""
    from trainables.spectral import SpectrumAccumulator

    spectrum = SpectrumAccumulator()
    for logits, labels in _eval_logits(model, loader, cfg, device):
        spectrum.update(logits, labels)
    return spectrum


def initial_band_profile(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    cfg: TrialConfig,
    device: torch.device,
) -> torch.Tensor:
    """``L_ce[k]`` of the untrained model (paper Fig. 1, "init"): one spectrum-only pass over the
    evaluation set at the evaluation LRG, like the final spectrum. The CPU RNG is restored after
    it (the loader draws a seed from it), so training is the same as without this pass."""
    with torch.random.fork_rng(devices=[]):
        model.lrg = cfg.lrg  # type: ignore[assignment]  # evaluated where the final one is
        try:
            spectrum = evaluate_spectrum(model, loader, cfg, device)
        finally:
            model.lrg = cfg.train_lrg  # type: ignore[assignment]
    return spectrum.band_profile.detach().to("cpu", torch.float64)


def with_init_profile(frame: pd.DataFrame, init: torch.Tensor | None) -> pd.DataFrame:
    """``frame`` (a ``to_frame()`` spectrum) with column :data:`INIT_PROFILE_COLUMN`: the init
    profile at each row's band ``k``, NaN where it has none (or none at all: an old checkpoint)."""
    values = init.tolist() if init is not None else []
    frame = frame.copy()
    frame[INIT_PROFILE_COLUMN] = [
        float(values[k]) if 0 <= k < len(values) else math.nan for k in frame["k"].astype(int)
    ]
    return frame


def band_metrics(spectrum: Any, input_size: int) -> dict[str, float]:
    """R_ce at every named band of the paper, scaled to the input (``r_ce_nu{K}``)."""
    from trainables.spectral import paper_bands

    bands = sorted(set(paper_bands(input_size).values()))
    return {f"r_ce_nu{nu}": float(spectrum.r_ce(nu)) for nu in bands}


def flops_metrics(cfg: TrialConfig, num_classes: int, lrg: int | None) -> dict[str, float]:
    """FLOPs of the architecture the trial evaluates under its FLOPs convention, cached per key."""
    from trainables.flops import architecture_flops

    report = architecture_flops(
        cfg.model,
        cfg.backbone,
        cfg.input_size,
        num_classes,
        lrg,
        cfg.prune_rate,
        cfg.decoder_prune_rate,
        convention=cfg.flops_convention,
    )
    return {"gflops": report.gflops, "gmacs": report.gmacs, "params": float(report.params)}


def summarise(
    evaluation: Evaluation, flops: dict[str, float], cfg: TrialConfig, grid: int, native: int
) -> dict[str, float]:
    """The flat metric dict of one evaluation (names are the MLflow schema)."""
    miou = float(evaluation.metrics["miou"])
    out = {
        "loss": evaluation.loss,
        "miou": miou,
        "boundary_iou": float(evaluation.metrics["boundary_iou"]),
        "pixel_acc": float(evaluation.metrics["pixel_acc"]),
        **flops,
        "fpi": flops["gflops"] / miou if miou > 0 else math.inf,
        "lrg": float(grid),
        "nu_max": float((grid - 1) // 2),
        "native_lrg": float(native),
        "r_ce_lrg": float(evaluation.spectrum.r_ce((grid - 1) // 2)),
    }
    if cfg.annotation_nu_max is not None:
        out["r_ce_annotation"] = float(evaluation.spectrum.r_ce(cfg.annotation_nu_max))
    out.update(band_metrics(evaluation.spectrum, cfg.input_size))
    return out


# --------------------------------------------------------------------------- checkpoints


def architecture_key(model: nn.Module, cfg: TrialConfig) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this trial's model."""
    arch = dict(model.architecture())  # type: ignore[operator]
    arch["prune_rate"] = cfg.prune_rate
    arch["decoder_prune_rate"] = cfg.decoder_prune_rate
    return arch


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

    ``band_profile_init``: the trial's profile at initialisation, kept so a resumed trial
    reports it without recomputing it from trained weights.
    """
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "architecture": architecture_key(model, cfg),
        "config": cfg.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
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
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"checkpoint {file} is not a loadable trial checkpoint ({reason})"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise InputError(f"checkpoint {file} is not a spectral-sweep trial checkpoint")
    return state


def load_checkpoint(path: Path, model: nn.Module, cfg: TrialConfig) -> dict[str, Any]:
    """Read a checkpoint (a file, or a directory holding one) into ``model``; its state."""
    file = path / CHECKPOINT_FILE if path.is_dir() else path
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


def restore_training_state(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
) -> int:
    """Restore optimizer, schedule and RNG; returns the epoch to continue from."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and state["rng_cuda"]:
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["epoch"]) + 1


def checkpoint_init_profile(state: dict[str, Any]) -> torch.Tensor | None:
    """The init profile a checkpoint holds; None for one written before it was kept."""
    value = state.get(_INIT_PROFILE_KEY)
    return value.to(torch.float64) if isinstance(value, torch.Tensor) else None


# --------------------------------------------------------------------------- the trial


def evaluation_epochs(cfg: TrialConfig) -> set[int]:
    """Epochs (0-based) after which the trial evaluates: every ``eval_every``, and the last."""
    return {e for e in range(cfg.epochs) if (e + 1) % cfg.eval_every == 0} | {cfg.epochs - 1}


def _progress(iterable: Iterable[int], enabled: bool, total: int) -> Iterator[int]:
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc="epochs", unit="epoch", leave=False)


def run_trial(
    config: TrialConfig | dict[str, Any],
    report: ReportFn | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
) -> TrialResult:
    """Train and evaluate one configuration, reporting after every evaluation.

    ``checkpoint_dir``: where ``checkpoint.pt`` is written after every evaluation; with
    ``resume`` and an existing checkpoint there, training continues after its epoch, and the
    init band profile comes from the checkpoint (NaN if the checkpoint predates it), never
    recomputed.
    ``progress`` shows a progress bar (the CLI); Tune shows its own table.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    train_set, eval_set, num_classes = build_datasets(cfg)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    resuming = resume and ckpt_dir is not None and (ckpt_dir / CHECKPOINT_FILE).exists()
    model = build_network(cfg, num_classes, device, from_checkpoint=resuming)
    native = int(model.native_grid(cfg.input_size))  # type: ignore[operator]
    train_loader = make_loader(train_set, cfg, train=True)
    eval_loader = make_loader(eval_set, cfg, train=False)
    optimizer, scheduler = build_optimizer(model, cfg, cfg.epochs * len(train_loader))
    pruner = _pruner(model, cfg)

    start = 0
    if resuming:
        assert ckpt_dir is not None
        state = load_checkpoint(ckpt_dir, model, cfg)
        start = restore_training_state(state, optimizer, scheduler)
        init_profile = checkpoint_init_profile(state)  # never recomputed from trained weights
    else:
        init_profile = initial_band_profile(model, eval_loader, cfg, device)

    result = TrialResult(config=cfg, metrics={})
    eval_epochs = evaluation_epochs(cfg)
    finished = start >= cfg.epochs  # run again after its last epoch: evaluate, train nothing
    if finished:
        start, eval_epochs = cfg.epochs - 1, {cfg.epochs - 1}
    grid = cfg.lrg if cfg.lrg is not None else native
    for epoch in _progress(range(start, cfg.epochs), progress, cfg.epochs - start):
        began = time.perf_counter()
        if finished:
            train_loss = math.nan  # nothing trained: the checkpoint already holds this epoch
        else:
            _reseed_order(train_loader, cfg.seed, epoch)
            train_loss = train_one_epoch(
                model, train_loader, optimizer, scheduler, cfg, device, epoch
            )
            if pruner is not None:
                pruner.step()
        if epoch not in eval_epochs:
            continue
        seconds = time.perf_counter() - began
        model.lrg = cfg.lrg  # type: ignore[assignment]  # post-hoc mode evaluates at the LRG
        evaluation = evaluate(model, eval_loader, num_classes, cfg, device)
        model.lrg = cfg.train_lrg  # type: ignore[assignment]
        metrics = summarise(evaluation, flops_metrics(cfg, num_classes, cfg.lrg), cfg, grid, native)
        metrics.update(
            epoch=float(epoch),
            train_loss=train_loss,
            epoch_seconds=seconds,
            lr=float(scheduler.get_last_lr()[0]),
        )
        saved = (
            save_checkpoint(
                ckpt_dir, model, optimizer, scheduler, cfg, epoch, band_profile_init=init_profile
            )
            if ckpt_dir is not None
            else None
        )
        trial_report = TrialReport(
            epoch=epoch,
            metrics=metrics,
            spectrum=with_init_profile(evaluation.spectrum.to_frame(), init_profile),
            per_class_iou=[float(v) for v in evaluation.metrics["per_class_iou"]],
            checkpoint_path=saved,
            final=epoch == cfg.epochs - 1,
        )
        result.reports.append(trial_report)
        result.metrics = metrics
        if report is not None:
            report(trial_report)
    if cfg.eval_lrgs:
        result.posthoc = evaluate_at_lrgs(model, eval_loader, num_classes, cfg, device, native)
    return result


def _reseed_order(loader: DataLoader[Any], seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle depend on (seed, epoch) only, so a resumed trial matches."""
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)


def _pruner(model: nn.Module, cfg: TrialConfig) -> Any:
    if cfg.prune_rate == 0 and cfg.decoder_prune_rate == 0:
        return None
    from trainables.pruning import SoftFilterPruner

    return SoftFilterPruner(model, cfg.prune_rate, cfg.decoder_prune_rate)


def evaluate_at_lrgs(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    cfg: TrialConfig,
    device: torch.device,
    native: int,
) -> dict[int, dict[str, float]]:
    """Post-hoc truncation: evaluate one trained model at each of ``cfg.eval_lrgs``."""
    out: dict[int, dict[str, float]] = {}
    trained_lrg = model.lrg
    for s in cfg.eval_lrgs:
        model.lrg = s  # type: ignore[assignment]
        evaluation = evaluate(model, loader, num_classes, cfg, device)
        out[s] = summarise(evaluation, flops_metrics(cfg, num_classes, s), cfg, s, native)
    model.lrg = trained_lrg
    return out


def evaluate_checkpoint(
    checkpoint: str | Path, lrgs: Iterable[int], overrides: dict[str, Any] | None = None
) -> dict[int, dict[str, float]]:
    """Post-hoc truncation of a saved trial: its model evaluated at several LRGs, no retraining."""
    file = Path(checkpoint)
    file = file / CHECKPOINT_FILE if file.is_dir() else file
    state = read_checkpoint(file)
    cfg = TrialConfig.from_dict({**state["config"], **(overrides or {})})
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    _, eval_set, num_classes = build_datasets(cfg)
    model = build_network(cfg, num_classes, device, from_checkpoint=True)
    apply_checkpoint(state, file, model, cfg)
    cfg = TrialConfig.from_dict({**cfg.to_dict(), "eval_lrgs": list(lrgs)})
    native = int(model.native_grid(cfg.input_size))  # type: ignore[operator]
    loader = make_loader(eval_set, cfg, train=False)
    return evaluate_at_lrgs(model, loader, num_classes, cfg, device, native)


__all__ = [
    "CHECKPOINT_FILE",
    "INIT_PROFILE_COLUMN",
    "Evaluation",
    "TrialDiverged",
    "TrialReport",
    "TrialResult",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_spectrum",
    "initial_band_profile",
    "load_checkpoint",
    "native_band",
    "run_trial",
    "save_checkpoint",
    "train_one_epoch",
]
