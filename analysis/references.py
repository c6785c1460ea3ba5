"""Reference runs read from MLflow: what a plan needs (architecture, mIoU, R_ce curve).

:func:`reference_from_run` reads one run, :func:`references_from_experiment` one reference per
pixel-wise group of a sweep. A run's params become its TrialConfig through
``run_schema.from_params``; a reference must run at its native grid with pixel-wise labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.groups import prepare_runs, truncation_references
from analysis.mlflow_runs import client_for, runs_frame
from analysis.mlflow_trials import load_runs_mlflow, run_params
from analysis.spectra import points_curve, read_spectrum, reference_spectrum, spectrum_curve
from trainables.config import TrialConfig
from trainables.dataset_registry import FIXED_NUM_CLASSES
from trainables.errors import InputError
from trainables.run_schema import Artifact, Metric, from_params

#: Params a reference run must have (the architecture FLOPs are counted for).
REQUIRED_PARAMS: tuple[str, ...] = ("model", "dataset", "backbone", "input_size")


@dataclass(frozen=True)
class ReferenceRun:
    """What a plan needs from a reference run: architecture, mIoU, R_ce curve."""

    run_id: str
    model: str
    dataset: str
    backbone: str
    input_size: int
    num_classes: int
    prune_rate: float
    decoder_prune_rate: float
    lrg: int  # the run's own (native) grid
    miou: float
    curve: dict[int, float]  # band -> R_ce of the reference run
    flops_convention: str = "compact"  # how the run's FLOPs were counted; plans count alike

    def context(self) -> dict[str, Any]:
        """The fields a plan's JSON and table header show."""
        return {
            "run_id": self.run_id,
            "model": self.model,
            "dataset": self.dataset,
            "backbone": self.backbone,
            "input_size": self.input_size,
            "prune_rate": self.prune_rate,
            "decoder_prune_rate": self.decoder_prune_rate,
        }

    def gflops(self, lrg: int | None) -> float:
        """GFLOPs of the reference's architecture at grid ``lrg`` (None: the native grid)."""
        return self.grid_gflops([lrg])[lrg]

    def grid_gflops(self, lrgs: Sequence[int | None]) -> dict[int | None, float]:
        """GFLOPs at each grid, counted in the run's own convention (``trainables.flops``,
        counting only; the network is built once for all of them; counts on disk are read
        without importing torch)."""
        from trainables.flops_cache import cached_gflops

        cached = cached_gflops(
            self.model, self.backbone, self.input_size, self.num_classes, lrgs,
            self.prune_rate, self.decoder_prune_rate, self.flops_convention,
        )  # fmt: skip
        if cached is not None:
            return cached
        from trainables.flops import grid_flops

        reports = grid_flops(
            self.model,
            self.backbone,
            self.input_size,
            self.num_classes,
            lrgs,
            self.prune_rate,
            self.decoder_prune_rate,
            convention=self.flops_convention,
        )
        return {lrg: report.gflops for lrg, report in reports.items()}


def reference_from_run(tracking_uri: str, run_id: str) -> ReferenceRun:
    """Read a reference run's params, final mIoU and R_ce curve from MLflow."""
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise InputError(f"no run {run_id!r} at {tracking_uri}") from None
    metrics = run.data.metrics
    where = f"run {run_id}"
    if Metric.MIOU not in metrics or not math.isfinite(metrics[Metric.MIOU]):
        raise InputError(f"{where} has no mIoU metric; is it a finished trial run?")
    uri = f"{run.info.artifact_uri.rstrip('/')}/{Artifact.SPECTRUM_CSV}"
    spectrum = read_spectrum(uri, tracking_uri)
    curve = spectrum_curve(spectrum) if spectrum is not None else {}
    if not curve:
        curve = points_curve(dict(metrics))
    if not curve:
        raise InputError(f"{where} has neither a spectrum.csv artifact nor r_ce_nu* metrics")
    return _reference(run.data.params, run_id, float(metrics[Metric.MIOU]), curve, where)


def _reference(
    params: Mapping[str, Any], run_id: str, miou: float, curve: dict[int, float], where: str
) -> ReferenceRun:
    """The reference of a run's params: at its native grid, with pixel-wise labels."""
    lacking = [name for name in REQUIRED_PARAMS if name not in params]
    if lacking:
        raise InputError(f"{where} lacks param {lacking[0]!r}")
    try:
        cfg = from_params(params)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    if not cfg.is_native:
        raise InputError(
            f"{where} runs at LRG {cfg.effective_lrg}, not at its native grid {cfg.native_lrg}; "
            "plan from the run at the native grid"
        )
    if cfg.uses_blockwise_labels:
        raise InputError(
            f"{where} trained on block-wise labels (annotation_nu_max {cfg.annotation_nu_max}); "
            "plan from a run with pixel-wise labels"
        )
    return ReferenceRun(
        run_id=run_id,
        model=cfg.model,
        dataset=cfg.dataset,
        backbone=cfg.backbone,
        input_size=cfg.input_size,
        num_classes=_num_classes(cfg, where),
        prune_rate=cfg.prune_rate,
        decoder_prune_rate=cfg.decoder_prune_rate,
        lrg=cfg.effective_lrg,
        miou=miou,
        curve=curve,
        flops_convention=cfg.flops_convention,
    )


def _num_classes(cfg: TrialConfig, where: str) -> int:
    """The run's class count: its param, else the data set's fixed count, else the data set's."""
    if cfg.num_classes is not None:
        return cfg.num_classes
    if cfg.dataset in FIXED_NUM_CLASSES:
        return FIXED_NUM_CLASSES[cfg.dataset]
    try:
        from trainables.data import build_dataset

        built = build_dataset(
            cfg.dataset, root=cfg.data_root, split="val", input_size=cfg.input_size
        )
        return int(built.num_classes)
    except Exception as err:
        raise InputError(
            f"{where} has num_classes=None and its data set {cfg.dataset!r} could not be opened "
            f"to count them ({type(err).__name__})"
        ) from None


def references_from_experiment(tracking_uri: str, experiment: str) -> list[ReferenceRun]:
    """One reference per pixel-wise group of an experiment: the run(s) at the native grid.

    Repeats (seeds) are averaged: mean mIoU and mean R_ce curve; params from the first run.
    """
    runs = load_runs_mlflow(tracking_uri, experiment)
    refs = truncation_references(prepare_runs(runs), reference_spectrum)
    if refs.empty:
        raise InputError(f"experiment {experiment!r} has no reference run at a native grid")
    table = runs_frame(tracking_uri, experiment).set_index("run_id", drop=False)
    out = []
    for ref in refs.to_dict("records"):
        first = str(ref["run_ids"][0])
        curve = ref["curve"]
        if not curve:
            raise InputError(f"reference run {first} has no R_ce curve (spectrum.csv or r_ce_nu*)")
        params = run_params(table.loc[first].to_dict())
        out.append(_reference(params, first, float(ref["miou"]), curve, f"run {first}"))
    return out


__all__ = ["ReferenceRun", "reference_from_run", "references_from_experiment"]
