"""The flat metrics of one evaluation, under the run schema's names (no name spelled here).

Every key comes from :class:`trainables.run_schema.Metric` or :func:`~trainables.run_schema.r_ce_point`,
and the grid, band and native grid from the evaluated :class:`~trainables.config.TrialConfig`
(its ``effective_lrg``, ``nu_max`` and ``native_lrg``), so ``orchestrator`` and ``analysis`` read
back exactly what a trial reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trainables.config import TrialConfig
from trainables.grids import paper_bands
from trainables.measures import fpi
from trainables.run_schema import INIT_PROFILE_COLUMN, Metric, r_ce_point

if TYPE_CHECKING:
    import pandas as pd
    import torch


def band_metrics(spectrum: Any, input_size: int) -> dict[str, float]:
    """R_ce at every named band of the paper, scaled to the input (``r_ce_nu{K}``)."""
    bands = sorted(set(paper_bands(input_size).values()))
    return {r_ce_point(nu): float(spectrum.r_ce(nu)) for nu in bands}


def flops_metrics(cfg: TrialConfig, num_classes: int) -> dict[str, float]:
    """FLOPs of the architecture ``cfg`` evaluates (at ``cfg.lrg``) under its FLOPs convention,
    cached per key."""
    return flops_metrics_at(cfg, num_classes, [cfg.lrg])[cfg.lrg]


def flops_metrics_at(
    cfg: TrialConfig, num_classes: int, lrgs: Sequence[int | None]
) -> dict[int | None, dict[str, float]]:
    """:func:`flops_metrics` at several grids of ``cfg``'s architecture (one network built)."""
    from trainables.flops import grid_flops

    reports = grid_flops(
        cfg.model,
        cfg.backbone,
        cfg.input_size,
        num_classes,
        lrgs,
        cfg.prune_rate,
        cfg.decoder_prune_rate,
        convention=cfg.flops_convention,
    )
    return {
        lrg: {
            Metric.GFLOPS: report.gflops,
            Metric.GMACS: report.gmacs,
            Metric.PARAMS: float(report.params),
        }
        for lrg, report in reports.items()
    }


def summarise(evaluation: Any, flops: dict[str, float], cfg: TrialConfig) -> dict[str, float]:
    """The flat metric dict of one evaluation (a ``trainables.trial.Evaluation``) of the model
    at ``cfg``'s grid: loss, segmentation metrics, ``flops``, FPI, grid and band, R_ce."""
    miou = float(evaluation.metrics[Metric.MIOU])
    spectrum = evaluation.spectrum
    out = {
        Metric.LOSS: evaluation.loss,
        Metric.MIOU: miou,
        Metric.BOUNDARY_IOU: float(evaluation.metrics[Metric.BOUNDARY_IOU]),
        Metric.PIXEL_ACC: float(evaluation.metrics[Metric.PIXEL_ACC]),
        **flops,
        Metric.FPI: fpi(flops[Metric.GFLOPS], miou),
        Metric.LRG: float(cfg.effective_lrg),
        Metric.NU_MAX: float(cfg.nu_max),
        Metric.NATIVE_LRG: float(cfg.native_lrg),
        Metric.R_CE_LRG: float(spectrum.r_ce(cfg.nu_max)),
    }
    if cfg.annotation_nu_max is not None:
        out[Metric.R_CE_ANNOTATION] = float(spectrum.r_ce(cfg.annotation_nu_max))
    out.update(band_metrics(spectrum, cfg.input_size))
    return out


def with_init_profile(frame: pd.DataFrame, init: torch.Tensor | None) -> pd.DataFrame:
    """``frame`` (a ``to_frame()`` spectrum) with column :data:`INIT_PROFILE_COLUMN`: the init
    profile at each row's band ``k``, NaN where it has none (or none at all: an old checkpoint)."""
    values = init.tolist() if init is not None else []
    frame = frame.copy()
    frame[INIT_PROFILE_COLUMN] = [
        float(values[k]) if 0 <= k < len(values) else math.nan for k in frame["k"].astype(int)
    ]
    return frame


__all__ = ["band_metrics", "flops_metrics", "flops_metrics_at", "summarise", "with_init_profile"]
