"""One trial: train a segmentation network and evaluate mIoU, boundary IoU, R_ce, FLOPs and FPI.

:func:`run_trial` only wires small pieces: the set-up (:mod:`trainables.trial_setup`), one epoch
(:func:`train_one_epoch`), one evaluation (:func:`evaluate`), its metrics
(:mod:`trainables.summary`) and checkpoints (:mod:`trainables.checkpoint`). It is plain PyTorch:
the orchestrator calls it inside a Ray Tune trial, ``spectral-sweep train`` calls it directly.
Before the first epoch a trial evaluates the CE band profile of its untrained model (spectrum
only; once per untrained network, data and LRG: :mod:`trainables.init_profiles`); every
report's spectrum carries it as column ``band_profile_init`` beside the final one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from trainables.checkpoint import (
    CHECKPOINT_FILE,
    apply_checkpoint,
    check_checkpoint_dir,
    check_same_trial,
    checkpoint_config,
    checkpoint_file,
    checkpoint_init_profile,
    load_checkpoint,
    read_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from trainables.config import TrialConfig, evaluation_epochs
from trainables.run_schema import INIT_PROFILE_COLUMN, Metric
from trainables.summary import flops_metrics, flops_metrics_at, summarise, with_init_profile
from trainables.trial_setup import (
    autocast,
    build_datasets,
    build_network,
    build_optimizer,
    build_pruner,
    initial_weights,
    make_loader,
    network_key,
    resolve_device,
    seed_everything,
    to_device,
)

if TYPE_CHECKING:
    import pandas as pd


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
    #: The final report only, with ``eval_lrgs``: the final model evaluated at each of them
    #: (``{lrg: metrics}``), made before the report so it travels with it (Tune, MLflow).
    posthoc: dict[int, dict[str, float]] = field(default_factory=dict)


@dataclass
class TrialResult:
    """The outcome of :func:`run_trial`: the last report's metrics plus every report."""

    config: TrialConfig
    metrics: dict[str, float]
    reports: list[TrialReport] = field(default_factory=list)
    posthoc: dict[int, dict[str, float]] = field(default_factory=dict)


ReportFn = Callable[[TrialReport], None]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------- train / evaluate


def train_one_epoch(
    model: nn.Module,
    loader: Batches,
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
        images, labels = to_device(batch, device)
        if cfg.uses_blockwise_labels:
            assert cfg.annotation_nu_max is not None
            labels = blockwise_labels(labels, cfg.annotation_nu_max)
        with autocast(device, cfg.amp):
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
    model: nn.Module, loader: Batches, num_classes: int, cfg: TrialConfig, device: torch.device
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
    model: nn.Module, loader: Batches, cfg: TrialConfig, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(float32 logits, labels)`` of every evaluation batch, the model in eval mode (the one
    way every evaluation runs the model; callers hold ``torch.no_grad``)."""
    model.eval()
    for batch in loader:
        images, labels = to_device(batch, device)
        with autocast(device, cfg.amp):
            logits = model(images)
        yield logits.float(), labels


@torch.no_grad()
def evaluate_spectrum(
    model: nn.Module, loader: Batches, cfg: TrialConfig, device: torch.device
) -> Any:
    """The CE spectrum alone (a ``SpectrumAccumulator``), computed as :func:`evaluate` does."""
    from trainables.spectral import SpectrumAccumulator

    spectrum = SpectrumAccumulator()
    for logits, labels in _eval_logits(model, loader, cfg, device):
        spectrum.update(logits, labels)
    return spectrum


def initial_band_profile(
    model: nn.Module,
    loader: Batches,
    cfg: TrialConfig,
    device: torch.device,
    network: tuple[Any, ...] | None = None,
) -> torch.Tensor:
    """``L_ce[k]`` of the untrained model (paper Fig. 1, "init"): one spectrum-only pass over the
    evaluation set at the evaluation LRG, like the final spectrum. The CPU RNG is restored after
    it (a loader given without its own generator draws a seed from it), so training is the same
    as without this pass. ``network``: the model's ``trial_setup.network_key``; with it, a
    profile another trial already made is read from the cache (``trainables.init_profiles``)."""
    from trainables import init_profiles

    key = init_profiles.profile_key(cfg, network, device)
    stored = init_profiles.load(key)
    if stored is not None:
        return stored
    with torch.random.fork_rng(devices=[]):
        model.lrg = cfg.lrg  # type: ignore[assignment]  # evaluated where the final one is
        try:
            spectrum = evaluate_spectrum(model, loader, cfg, device)
        finally:
            model.lrg = cfg.train_lrg  # type: ignore[assignment]
    profile = spectrum.band_profile.detach().to("cpu", torch.float64)
    init_profiles.store(key, profile)
    return profile


def evaluate_at(
    model: nn.Module, loader: Batches, num_classes: int, cfg: TrialConfig, device: torch.device
) -> tuple[Evaluation, dict[str, float]]:
    """Evaluate ``model`` at ``cfg.lrg`` (post-hoc mode trains elsewhere) and summarise it; the
    model's training grid is restored after."""
    trained_lrg = model.lrg
    model.lrg = cfg.lrg  # type: ignore[assignment]
    try:
        evaluation = evaluate(model, loader, num_classes, cfg, device)
    finally:
        model.lrg = trained_lrg
    return evaluation, summarise(evaluation, flops_metrics(cfg, num_classes), cfg)


# --------------------------------------------------------------------------- the trial


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

    ``config``: a TrialConfig, or the plain dict Ray hands a trial (validated here, once).
    ``checkpoint_dir``: where ``checkpoint.pt`` is written after every evaluation; with
    ``resume`` and an existing checkpoint there, training continues after its epoch, and the
    init band profile comes from the checkpoint (NaN if the checkpoint predates it), never
    recomputed.
    ``progress`` shows a progress bar (the CLI); Tune shows its own table.
    With ``cfg.eval_lrgs`` the final model is evaluated at each of them before the final
    report, which carries them (``TrialReport.posthoc``, also ``TrialResult.posthoc``).
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    # the files a trial reads and writes are checked before any data is read or trained on
    ckpt_dir = check_checkpoint_dir(checkpoint_dir) if checkpoint_dir is not None else None
    resuming = resume and ckpt_dir is not None and (ckpt_dir / CHECKPOINT_FILE).exists()
    if not resuming and cfg.weights_path is not None:
        from trainables.models.encoder import check_state_file

        check_state_file(cfg.weights_path)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    train_set, eval_set, num_classes = build_datasets(cfg)
    network = network_key(cfg, num_classes, initial_weights(cfg, from_checkpoint=resuming))
    model = build_network(cfg, num_classes, device, from_checkpoint=resuming)
    train_loader = make_loader(train_set, cfg, train=True, device=device)
    eval_loader = make_loader(eval_set, cfg, train=False, device=device)
    optimizer, scheduler = build_optimizer(model, cfg, cfg.epochs * len(train_loader))
    pruner = build_pruner(model, cfg)

    start = 0
    if resuming:
        assert ckpt_dir is not None
        state = load_checkpoint(ckpt_dir, model, cfg)
        start = restore_training_state(state, optimizer, scheduler, cfg)
        check_same_trial(state, checkpoint_file(ckpt_dir), cfg)
        init_profile = checkpoint_init_profile(state)  # never recomputed from trained weights
    else:
        init_profile = initial_band_profile(model, eval_loader, cfg, device, network)

    result = TrialResult(config=cfg, metrics={})
    eval_epochs = evaluation_epochs(cfg)
    finished = start >= cfg.epochs  # run again after its last epoch: evaluate, train nothing
    if finished:
        start, eval_epochs = cfg.epochs - 1, {cfg.epochs - 1}
    trained, epochs_trained = 0.0, 0  # training seconds and epochs since the previous report
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
            epochs_trained += 1
        trained += time.perf_counter() - began
        if epoch not in eval_epochs:
            continue
        evaluation, metrics = evaluate_at(model, eval_loader, num_classes, cfg, device)
        metrics.update(
            {
                Metric.EPOCH: float(epoch),
                Metric.TRAIN_LOSS: train_loss,
                Metric.EPOCH_SECONDS: trained / max(epochs_trained, 1),
                Metric.TRAIN_SECONDS: trained,
                Metric.LR: float(scheduler.get_last_lr()[0]),
            }
        )
        final = epoch == cfg.epochs - 1
        posthoc = (
            evaluate_at_lrgs(model, eval_loader, num_classes, cfg, device)
            if final and cfg.eval_lrgs
            else {}
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
            final=final,
            posthoc=posthoc,
        )
        trained, epochs_trained = 0.0, 0
        result.reports.append(trial_report)
        result.metrics = metrics
        result.posthoc = posthoc
        if report is not None:
            report(trial_report)
    return result


def _reseed_order(loader: DataLoader[Any], seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle depend on (seed, epoch) only, so a resumed trial matches."""
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)


def evaluate_at_lrgs(
    model: nn.Module, loader: Batches, num_classes: int, cfg: TrialConfig, device: torch.device
) -> dict[int, dict[str, float]]:
    """Post-hoc truncation: evaluate one trained model at each of ``cfg.eval_lrgs``."""
    flops_metrics_at(cfg, num_classes, cfg.eval_lrgs)  # count every grid on one network
    return {
        s: evaluate_at(model, loader, num_classes, dataclasses.replace(cfg, lrg=s), device)[1]
        for s in cfg.eval_lrgs
    }


def evaluate_checkpoint(
    checkpoint: str | Path, lrgs: Iterable[int], overrides: dict[str, Any] | None = None
) -> dict[int, dict[str, float]]:
    """Post-hoc truncation of a saved trial: its model evaluated at several LRGs, no retraining."""
    file = checkpoint_file(checkpoint)
    state = read_checkpoint(file)
    cfg = checkpoint_config(state, overrides)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    _, eval_set, num_classes = build_datasets(cfg)
    model = build_network(cfg, num_classes, device, from_checkpoint=True)
    apply_checkpoint(state, file, model, cfg)
    cfg = dataclasses.replace(cfg, eval_lrgs=tuple(int(s) for s in lrgs))
    loader = make_loader(eval_set, cfg, train=False, device=device)
    return evaluate_at_lrgs(model, loader, num_classes, cfg, device)


__all__ = [
    "CHECKPOINT_FILE",
    "INIT_PROFILE_COLUMN",
    "Evaluation",
    "TrialDiverged",
    "TrialReport",
    "TrialResult",
    "evaluate",
    "evaluate_at",
    "evaluate_at_lrgs",
    "evaluate_checkpoint",
    "evaluate_spectrum",
    "initial_band_profile",
    "load_checkpoint",
    "run_trial",
    "save_checkpoint",
    "train_one_epoch",
]
