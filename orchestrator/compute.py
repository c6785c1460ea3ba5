"""The compute a sweep costs, estimated before anything runs (``sweep --dry-run``).

Per trial: the forward GFLOPs of one image through the network the trial runs, counted with
``trainables.flops.grid_flops`` (each distinct architecture built once, every grid of it traced
on that network), times the images it sees:

- training: ``train images x epochs x 3`` (forward, and a backward pass of about twice the
  forward), at the grid the model trains at (the native grid for post-hoc truncation);
- evaluation: ``eval images x evaluations x 1``, where evaluations are the evaluation epochs
  (every ``eval_every`` and the last) plus the spectrum-only pass of the untrained model before
  the first epoch; ``eval_lrgs`` add one pass each at their grid.

The network counted is the unpruned one at output stride 16, whatever the trial's prune rate or
FLOPs convention: soft filter pruning zeroes kernels but keeps them in the network, so training
and evaluation compute every filter (the trial's logged ``gflops`` is the compacted network it
would deploy). Data-loading, the CE spectrum (a few % of a forward pass) and the optimiser are
not counted. Image counts: the data set built as the trial builds it when that is cheap
(synthetic sets, or a data root on this machine), else the published split sizes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainables.config import TrialConfig
from trainables.dataset_registry import FIXED_NUM_CLASSES
from trainables.errors import InputError

#: Peak dense bf16 tensor TFLOPS from the vendors' data sheets (V100: fp16, it has no bf16).
GPU_TFLOPS: dict[str, float] = {
    "V100": 125.0,
    "A100": 312.0,
    "RTX4090": 165.0,
    "H100": 989.0,
    "H200": 989.0,
}
#: Sustained share of the peak a segmentation training reaches, by default.
DEFAULT_UTILISATION = 0.4
#: Published sizes of the ``train`` and ``val`` splits (used when the data is not here).
PUBLISHED_SPLITS: dict[str, dict[str, int]] = {
    "voc": {"train": 1464, "train_aug": 10582, "val": 1449},
    "cityscapes": {"train": 2975, "val": 500},
    "deepglobe": {"train": 701, "val": 102},
}
#: The forward pass's share of a training step: forward + backward ~ 3 forwards.
TRAIN_FACTOR = 3.0


def gpu_name(name: str) -> str:
    """The table's name of a known GPU (case, ``-``, space and ``NVIDIA`` insensitive), or an
    InputError listing the known ones."""
    key = name.upper().replace("-", "").replace(" ", "").removeprefix("NVIDIA")
    if key not in GPU_TFLOPS:
        known = ", ".join(f"{n} ({t:g})" for n, t in GPU_TFLOPS.items())
        raise InputError(
            f"--gpu {name!r} is not a known GPU; known (peak dense bf16 TFLOPS): {known}; or "
            "give --device-tflops T"
        )
    return key


@dataclass(frozen=True)
class DataFacts:
    """What a trial's data set gives the estimate: image counts and the class count."""

    train_images: int | None
    eval_images: int | None
    num_classes: int | None


@dataclass(frozen=True)
class TrialCompute:
    """One trial's estimated compute (FLOPs, not multiply-adds)."""

    train_gflops: float  # forward GFLOPs of one image at the training grid
    eval_gflops: float  # ... at the evaluation grid
    train_images: int
    epochs: int
    eval_images: int
    evaluations: int  # passes over the evaluation set at the trial's grid
    posthoc_gflops: float  # sum of the forward GFLOPs at each of eval_lrgs (one pass each)

    @property
    def train_pflops(self) -> float:
        return self.train_gflops * self.train_images * self.epochs * TRAIN_FACTOR / 1e6

    @property
    def eval_pflops(self) -> float:
        return (self.eval_gflops * self.evaluations + self.posthoc_gflops) * self.eval_images / 1e6

    @property
    def pflops(self) -> float:
        return self.train_pflops + self.eval_pflops


def evaluations(cfg: TrialConfig) -> int:
    """Passes over the evaluation set at the trial's grid: its evaluation epochs (every
    ``eval_every`` and the last, ``trainables.config.evaluation_epochs``) and the initial
    spectrum-only pass."""
    from trainables.config import evaluation_epochs

    return len(evaluation_epochs(cfg)) + 1


def data_facts(cfg: TrialConfig) -> DataFacts:
    """Image counts of the trial's splits and its class count (None where unknown)."""
    synthetic = cfg.dataset.startswith("synthetic")
    lengths = (cfg.train_length, cfg.eval_length, cfg.num_classes)
    if synthetic and "length" not in cfg.extra and all(v is not None for v in lengths):
        # generated at exactly these lengths and classes: nothing to build (no torch import)
        return DataFacts(cfg.train_length, cfg.eval_length, cfg.num_classes)
    root_here = cfg.data_root is not None and Path(cfg.data_root).expanduser().is_dir()
    if synthetic or root_here:
        try:
            train, classes = _built(cfg, "train", cfg.train_length)
            val, _ = _built(cfg, "val", cfg.eval_length)
            return DataFacts(train, val, cfg.num_classes or classes)
        except InputError:
            if synthetic:
                raise
    published = PUBLISHED_SPLITS.get(cfg.dataset, {})
    train_split = str(cfg.extra.get("train_split", "train"))
    return DataFacts(
        _limited(published.get(train_split), cfg.train_length),
        _limited(published.get("val"), cfg.eval_length),
        cfg.num_classes or FIXED_NUM_CLASSES.get(cfg.dataset),
    )


def _built(cfg: TrialConfig, split: str, length: int | None) -> tuple[int, int]:
    """Length and class count of a split built as ``trainables.trial_setup`` builds it."""
    from trainables.trial_setup import build_split

    dataset = build_split(cfg, split, length, augment=False)
    size = len(dataset)
    synthetic = cfg.dataset.startswith("synthetic")
    return (size if synthetic else _limited(size, length) or size), int(dataset.num_classes)


def _limited(size: int | None, length: int | None) -> int | None:
    if size is None:
        return length
    return size if length is None else min(size, length)


#: An architecture counted once: (model, backbone, input size, classes).
Architecture = tuple[str, str, int, int]
#: Progress: (index from 1, count, architecture, number of grids) before each count.
Progress = Callable[[int, int, Architecture, int], None]


def counts_on_disk(
    needs: Mapping[Architecture, set[int]],
) -> dict[Architecture, dict[int | None, float] | None]:
    """The FLOPs cache's GFLOPs of each architecture's grids, None where any is not on disk
    (no torch import either way)."""
    from trainables.flops_cache import cached_gflops

    return {
        arch: cached_gflops(*arch, sorted(grids, reverse=True)) for arch, grids in needs.items()
    }


def count_grids(
    needs: Mapping[Architecture, set[int]],
    progress: Progress | None = None,
    on_disk: Mapping[Architecture, dict[int | None, float] | None] | None = None,
) -> dict[tuple[Architecture, int], float]:
    """Forward GFLOPs of every (architecture, grid), unpruned at output stride 16; one network
    per architecture (``grid_flops``, cached in this process). ``on_disk``:
    :func:`counts_on_disk` of ``needs``, when the caller already read it."""
    on_disk = counts_on_disk(needs) if on_disk is None else on_disk
    out: dict[tuple[Architecture, int], float] = {}
    missing = {}
    for arch, grids in needs.items():
        cached = on_disk[arch]
        if cached is None:
            missing[arch] = grids
        else:  # counted before, by any process: no network, no torch import
            out.update({(arch, int(s)): g for s, g in cached.items() if s is not None})
    for i, (arch, grids) in enumerate(missing.items(), start=1):
        from trainables.flops import grid_flops

        if progress is not None:
            progress(i, len(missing), arch, len(grids))
        model, backbone, input_size, classes = arch
        reports = grid_flops(model, backbone, input_size, classes, sorted(grids, reverse=True))
        out.update({(arch, int(s)): r.gflops for s, r in reports.items() if s is not None})
    return out


@dataclass
class CountPlan:
    """What :func:`estimate` reads and counts: each trial's data facts (by key) and the grids of
    each architecture."""

    facts: dict[str, DataFacts]
    needs: dict[Architecture, set[int]]

    @functools.cached_property
    def on_disk(self) -> dict[Architecture, dict[int | None, float] | None]:
        """:func:`counts_on_disk` of :attr:`needs`, read once for the check and the count."""
        return counts_on_disk(self.needs)

    def uncounted_backbones(self) -> list[str]:
        """Backbones of the architectures whose counts are not all on disk (counting them
        builds the network, so the name must be timm's)."""
        missing = (arch for arch, cached in self.on_disk.items() if cached is None)
        return list(dict.fromkeys(arch[1] for arch in missing))


def plan_counts(trials: Sequence[TrialConfig]) -> CountPlan:
    """The data facts of ``trials`` and the (architecture, grids) their compute needs."""
    facts = {t.key: data_facts(t) for t in trials}
    needs: dict[Architecture, set[int]] = {}
    for trial in trials:
        classes = facts[trial.key].num_classes
        if classes is None:
            continue
        arch = (trial.model, trial.backbone, trial.input_size, classes)
        needs.setdefault(arch, set()).update(_grids(trial))
    return CountPlan(facts, needs)


def estimate(
    trials: Sequence[TrialConfig],
    progress: Progress | None = None,
    plan: CountPlan | None = None,
) -> list[TrialCompute | None]:
    """Each trial's compute, None where its data set's image or class count is unknown
    (``plan``: :func:`plan_counts` of the same trials, when the caller already made it)."""
    plan = plan_counts(trials) if plan is None else plan
    facts = plan.facts
    gflops = count_grids(plan.needs, progress, plan.on_disk)
    out: list[TrialCompute | None] = []
    for trial in trials:
        fact = facts[trial.key]
        if fact.num_classes is None or fact.train_images is None or fact.eval_images is None:
            out.append(None)
            continue
        arch = (trial.model, trial.backbone, trial.input_size, fact.num_classes)
        train_grid = trial.train_lrg or trial.native_lrg
        out.append(
            TrialCompute(
                train_gflops=gflops[(arch, train_grid)],
                eval_gflops=gflops[(arch, trial.effective_lrg)],
                train_images=fact.train_images,
                epochs=trial.epochs,
                eval_images=fact.eval_images,
                evaluations=evaluations(trial),
                posthoc_gflops=sum(gflops[(arch, int(s))] for s in trial.eval_lrgs),
            )
        )
    return out


def _grids(trial: TrialConfig) -> set[int]:
    return {trial.train_lrg or trial.native_lrg, trial.effective_lrg, *map(int, trial.eval_lrgs)}


def gpu_hours(pflops: float, tflops: float, utilisation: float) -> float:
    """Hours one GPU of ``tflops`` peak at ``utilisation`` needs for ``pflops``."""
    return pflops * 1e15 / (tflops * 1e12 * utilisation) / 3600.0


def total(computes: Sequence[TrialCompute | None]) -> tuple[float, float, int]:
    """Training and evaluation PFLOPs of the known trials, and how many are unknown."""
    known = [c for c in computes if c is not None]
    unknown = len(computes) - len(known)
    return sum(c.train_pflops for c in known), sum(c.eval_pflops for c in known), unknown


__all__ = [
    "DEFAULT_UTILISATION",
    "GPU_TFLOPS",
    "PUBLISHED_SPLITS",
    "CountPlan",
    "DataFacts",
    "TrialCompute",
    "count_grids",
    "counts_on_disk",
    "data_facts",
    "estimate",
    "evaluations",
    "gpu_hours",
    "gpu_name",
    "plan_counts",
    "total",
]
