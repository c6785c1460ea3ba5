"""The MLflow run schema: every name the outside world sees, spelled once (no Ray, no MLflow).

``orchestrator`` writes runs with these names and ``analysis`` reads them back, so both import
this module and nothing else spells a tag, a role, an artifact or a metric:

- tags ``spectral_sweep.*`` (:class:`Tag`), the run roles (:data:`ROLES`) and strategies;
- artifact names (:class:`Artifact`);
- metric names (:class:`Metric`, and :func:`r_ce_point` for the ``r_ce_nu{K}`` family);
- params: :func:`to_params` and :func:`from_params`, the one pair that crosses between a
  :class:`~trainables.config.TrialConfig` and MLflow's string params. A setting that is absent
  (None) is not logged, and an absent param reads back as None; params written by earlier
  versions as the string ``"None"`` read back as None too.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from trainables.config import NONE_STRINGS, TrialConfig

TAG_PREFIX = "spectral_sweep."


class Tag:
    """Tag names (``spectral_sweep.<name>``)."""

    SWEEP = TAG_PREFIX + "sweep"
    TRIAL_ID = TAG_PREFIX + "trial_id"
    SPACE = TAG_PREFIX + "space"
    STRATEGY = TAG_PREFIX + "strategy"
    ROLE = TAG_PREFIX + "role"
    NODE_ID = TAG_PREFIX + "node_id"
    NODE_IP = TAG_PREFIX + "node_ip"
    ERROR = TAG_PREFIX + "error"
    ERROR_TRACE = TAG_PREFIX + "error_trace"
    CONFIG_KEY = TAG_PREFIX + "config_key"  # TrialConfig.key: same experiment, same key
    REFERENCE_RUN = TAG_PREFIX + "reference_run_id"  # predictions and confirmations
    REASON = TAG_PREFIX + "reason"  # adaptive: why the strategy trained this configuration
    STOPPED_EARLY = TAG_PREFIX + "stopped_early"  # "true": the scheduler (ASHA) stopped it
    EPOCHS_COMPLETED = TAG_PREFIX + "epochs_completed"  # of a run stopped early or killed
    PARETO = TAG_PREFIX + "pareto"  # "true": on its sweep's GFLOPs-mIoU Pareto front


class MlflowTag:
    """MLflow's own tags, as its UI reads them."""

    PARENT_RUN_ID = "mlflow.parentRunId"  # nests a run under another
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    USER = "mlflow.user"
    GIT_COMMIT = "mlflow.source.git.commit"
    EXPERIMENT_KIND = "mlflow.experimentKind"  # an experiment tag: which UI view opens


#: The experiment kind MLflow 3's UI opens in its model-training view (not GenAI's traces).
MODEL_TRAINING_KIND = "custom_model_development"


class Role:
    """What a run is (tag :attr:`Tag.ROLE`)."""

    SWEEP = "sweep"  # the parent run of a sweep: its settings, space and outcome
    TRIAL = "trial"
    REFERENCE = "reference"
    CONFIRM = "confirm"
    PREDICTION = "prediction"
    CANDIDATE = "candidate"  # trained by the adaptive strategy after its group's reference
    ANALYSIS = "analysis"


#: Roles of runs a sweep writes; ``analysis`` runs are written by ``analyze``.
ROLES: tuple[str, ...] = (
    Role.SWEEP,
    Role.TRIAL,
    Role.REFERENCE,
    Role.CONFIRM,
    Role.PREDICTION,
    Role.CANDIDATE,
)
#: Runs that trained nothing (skipped when reading trials).
UNTRAINED_ROLES: tuple[str, ...] = (Role.ANALYSIS, Role.PREDICTION, Role.SWEEP)


class Strategy:
    """How a sweep chose what to train (tag :attr:`Tag.STRATEGY`)."""

    EXHAUSTIVE = "exhaustive"  # every trial of the space
    ESTIMATE = "estimate"  # one reference per group, the rest predicted (the paper's method)
    PAPER = "paper"  # the same as ESTIMATE, by its name in analysis.strategies
    ADAPTIVE = "adaptive"  # references, then what is likely to beat the best measured FPI


#: The sweep strategies, in the order the CLI lists them.
STRATEGIES: tuple[str, ...] = (
    Strategy.EXHAUSTIVE,
    Strategy.ESTIMATE,
    Strategy.PAPER,
    Strategy.ADAPTIVE,
)


class Artifact:
    """Artifact file names."""

    SPECTRUM_CSV = "spectrum.csv"
    SPECTRUM_PNG = "spectrum.png"
    PER_CLASS_IOU_JSON = "per_class_iou.json"
    POSTHOC_CSV = "posthoc.csv"  # eval_lrgs: the final model at each LRG, a row per LRG
    CHECKPOINT_PT = "checkpoint.pt"  # a trial's checkpoint (weights, optimizer, config)
    PARETO_CSV = "pareto_front.csv"  # a multi-objective sweep's front, on its parent run
    PARETO_PNG = "pareto_front.png"
    SPACE_YAML = "space.yaml"  # the sweep's space, on its parent run
    PLAN_LRG_JSON = "plan_lrg.json"
    PLAN_ANNOTATION_JSON = "plan_annotation.json"
    # what ``analyze`` writes (to its --out directory, and on the analysis run)
    ESTIMATOR_JSON = "estimator.json"
    OPTIMAL_LRG_CSV = "optimal_lrg.csv"
    DROPS_CSV = "drops.csv"
    LODO_CSV = "lodo.csv"
    BUDGET_CURVE_CSV = "budget_curve.csv"
    # what ``backtest --out`` writes
    BACKTEST_JSON = "backtest.json"
    BACKTEST_GROUPS_CSV = "backtest_groups.csv"
    BACKTEST_CHOICES_CSV = "backtest_choices.csv"
    ADAPTIVE_PLAN_JSON = "adaptive_plan.json"  # live adaptive: choices and pick, per reference
    REPORT_MD = "report.md"
    REPORT_HTML = "report.html"
    FIGURES_DIR = "figures"


#: spectrum.csv's column with the band profile at initialisation (before the first epoch).
INIT_PROFILE_COLUMN = "band_profile_init"


class Metric:
    """Metric names a trial logs (per evaluation, step = epoch)."""

    MIOU = "miou"
    BOUNDARY_IOU = "boundary_iou"
    PIXEL_ACC = "pixel_acc"
    LOSS = "loss"
    TRAIN_LOSS = "train_loss"
    GFLOPS = "gflops"
    GMACS = "gmacs"
    PARAMS = "params"
    FPI = "fpi"
    LRG = "lrg"
    NU_MAX = "nu_max"
    NATIVE_LRG = "native_lrg"
    R_CE_LRG = "r_ce_lrg"
    R_CE_ANNOTATION = "r_ce_annotation"
    EPOCH = "epoch"
    EPOCH_SECONDS = "epoch_seconds"  # mean training seconds per epoch since the last report
    TRAIN_SECONDS = "train_seconds"  # training seconds since the last report (sum: the trial's)
    LR = "lr"
    # a prediction run (the estimate strategy) and its reference run
    R_CE = "r_ce"
    PREDICTED_DROP = "predicted_drop"
    PREDICTED_MIOU = "predicted_miou"
    PREDICTED_FPI = "predicted_fpi"
    FEASIBLE = "feasible"
    RECOMMENDED = "recommended"
    RECOMMENDED_LRG = "recommended_lrg"
    # a candidate run of the adaptive strategy: its prediction when it was chosen
    PREDICTED_DROP_SD = "predicted_drop_sd"
    PREDICTED_FPI_LOW = "predicted_fpi_low"
    PREDICTED_FPI_HIGH = "predicted_fpi_high"
    PROBABILITY_BETTER = "probability_better"
    BEST_FPI_BEFORE = "best_fpi_before"
    PHASE = "phase"
    # the analysis run
    ESTIMATOR_SLOPE = "estimator_slope"
    ESTIMATOR_INTERCEPT = "estimator_intercept"
    ESTIMATOR_R2 = "estimator_r2"
    ESTIMATOR_N = "estimator_n"
    LODO_EXACT_FRACTION = "lodo_exact_fraction"
    LODO_MEAN_REGRET = "lodo_mean_regret"


#: The analysis run's param: the fit's R_ce range.
R_CE_MAX_PARAM = "r_ce_max"


_R_CE_POINT = re.compile(r"^r_ce_nu(\d+)$")


def r_ce_point(nu: int) -> str:
    """The metric holding R_ce at band ``nu``: ``r_ce_nu{nu}``."""
    return f"r_ce_nu{int(nu)}"


def r_ce_point_band(name: str) -> int | None:
    """The band of an ``r_ce_nu{K}`` metric name, None for any other name."""
    match = _R_CE_POINT.match(name)
    return int(match.group(1)) if match else None


#: What a post-hoc evaluation (``eval_lrgs``: the final model evaluated at another LRG, not
#: retrained) reports per LRG: ``posthoc.csv``'s columns after ``lrg``, and the metrics
#: ``posthoc/lrg_{S}/{name}`` of the trial's final step.
POSTHOC_METRICS: tuple[str, ...] = (
    Metric.MIOU,
    Metric.BOUNDARY_IOU,
    Metric.PIXEL_ACC,
    Metric.LOSS,
    Metric.GFLOPS,
    Metric.FPI,
    Metric.R_CE_LRG,
)
#: ``posthoc.csv``'s columns, and those of ``train``'s post-hoc table: a row per LRG.
POSTHOC_COLUMNS: tuple[str, ...] = (Metric.LRG, *POSTHOC_METRICS)


def posthoc_metric(lrg: int, name: str) -> str:
    """The metric holding ``name`` of the post-hoc evaluation at ``lrg`` (``posthoc/lrg_9/miou``:
    apart from the trial's own ``name``, and sorted together)."""
    return f"posthoc/lrg_{int(lrg)}/{name}"


def posthoc_metrics(posthoc: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Post-hoc evaluations (``{lrg: metrics}``) as flat metrics (``POSTHOC_METRICS`` each)."""
    return {
        posthoc_metric(lrg, name): float(values[name])
        for lrg, values in posthoc.items()
        for name in POSTHOC_METRICS
        if name in values
    }


class Param:
    """Params logged beside the TrialConfig fields: derived, for filtering in the UI."""

    LRG_EFFECTIVE = "lrg_effective"  # the grid the decoder runs on
    NATIVE_LRG = "native_lrg"


#: Param names that are not TrialConfig fields.
DERIVED_PARAMS: tuple[str, ...] = (Param.LRG_EFFECTIVE, Param.NATIVE_LRG)
#: Param texts that mean "absent" (config's None spellings, and pandas' NaN).
_ABSENT = NONE_STRINGS | {"nan"}


def run_name(cfg: TrialConfig) -> str:
    """A trial run's name that says what ran: ``dan-resnet18-synthetic-smooth-lrg9-p0``, with
    ``-nu4`` for block-wise labels, ``-dp0.2`` for a decoder rate, ``-s1`` for a seed."""
    parts = [cfg.model, cfg.backbone, cfg.dataset, f"lrg{cfg.effective_lrg}"]
    parts.append(f"p{cfg.prune_rate:g}")
    if cfg.decoder_prune_rate:
        parts.append(f"dp{cfg.decoder_prune_rate:g}")
    if cfg.annotation_nu_max is not None:
        parts.append(f"nu{cfg.annotation_nu_max:g}")
    if cfg.seed:
        parts.append(f"s{cfg.seed}")
    return "-".join(parts)


def to_params(cfg: TrialConfig) -> dict[str, str]:
    """MLflow params of a trial: its set fields as strings (None left out), plus the derived
    ``lrg_effective`` and ``native_lrg``."""
    params: dict[str, str] = {}
    for name, value in dataclasses.asdict(cfg).items():
        if value is None or (isinstance(value, tuple | list | dict) and not value):
            continue
        params[name] = _text(value)
    params[Param.NATIVE_LRG] = str(cfg.native_lrg)
    params[Param.LRG_EFFECTIVE] = str(cfg.effective_lrg)
    return params


def from_params(params: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of a run's params (absent or ``"None"`` -> the field's None/default;
    derived and foreign params are ignored). Bad values raise InputError naming the field."""
    known = {f.name for f in dataclasses.fields(TrialConfig)}
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name not in known or value is None or str(value).strip().lower() in _ABSENT:
            continue
        values[name] = json.loads(value) if name == "extra" and isinstance(value, str) else value
    return TrialConfig.from_dict(values)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


__all__ = [
    "DERIVED_PARAMS",
    "INIT_PROFILE_COLUMN",
    "MODEL_TRAINING_KIND",
    "POSTHOC_COLUMNS",
    "POSTHOC_METRICS",
    "ROLES",
    "R_CE_MAX_PARAM",
    "STRATEGIES",
    "TAG_PREFIX",
    "UNTRAINED_ROLES",
    "Artifact",
    "Metric",
    "MlflowTag",
    "Param",
    "Role",
    "Strategy",
    "Tag",
    "from_params",
    "posthoc_metric",
    "posthoc_metrics",
    "r_ce_point",
    "r_ce_point_band",
    "run_name",
    "to_params",
]
