"""The validated configuration of one trial.

Ray hands a trial a plain dict; :meth:`TrialConfig.from_dict` turns it into this typed, checked
dataclass on the trial's first line, so a bad value fails there with the field, the value and what
was expected (an :class:`~trainables.errors.InputError`). Values may arrive as strings (CLI flags,
MLflow params): they are coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from trainables.dataset_registry import DATASET_NAMES, FIXED_NUM_CLASSES
from trainables.errors import InputError
from trainables.grids import band_of_lrg, native_band, native_grid_size
from trainables.model_registry import MODELS

TruncationMode = Literal["train", "posthoc"]
#: How a trial's FLOPs are counted (``trainables.flops_conventions.FLOPS_CONVENTIONS`` describes each).
FlopsConvention = Literal["compact", "paper"]
DeviceName = Literal["auto", "cpu", "cuda"]

# Models and data sets (MODELS, DATASET_NAMES, FIXED_NUM_CLASSES) come from their one,
# torch-free registries and are checked here, so a sweep fails before it starts.
#: Prune rates above this leave too few filters to train (the issue's bound).
MAX_PRUNE_RATE = 0.9
#: Settings that change how a trial runs, not what it trains and measures (left out of its key).
RUN_ONLY_FIELDS = frozenset({"device", "num_threads", "eval_every", "eval_lrgs", "loader_workers"})
#: Fields added after keys were first recorded: left out of the key at these defaults, so the
#: keys of earlier runs (and their resume) stay valid.
_KEY_OMITTED_DEFAULTS: dict[str, Any] = {"flops_convention": "compact"}


#: Smallest and largest square input side a trial (and a FLOPs count) accepts.
INPUT_SIZES: tuple[int, int] = (16, 4096)


def check_input_size(input_size: int, name: str = "input size") -> None:
    """Input sizes are integers in a trial's range (:data:`INPUT_SIZES`: smaller images have
    no stride-4 grid worth a decoder; larger ones would not fit in memory). ``name``: what the
    error calls it (a flag)."""
    low, high = INPUT_SIZES
    if (
        isinstance(input_size, bool)
        or not isinstance(input_size, int)
        or not low <= input_size <= high
    ):
        raise InputError(f"{name} {input_size!r} must be an integer in [{low}, {high}]")


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; defaults are the paper's where it gives them."""

    model: str = "deeplabv3plus"  # "deeplabv3plus" or "dan"
    backbone: str = "resnet101"  # any timm backbone with features_only + output_stride 16
    dataset: str = "synthetic-smooth"  # a name from trainables.data.list_datasets()
    data_root: str | None = None  # on-disk root of a real data set (None for synthetic)
    num_classes: int | None = None  # None: the data set's own count
    input_size: int = 513  # square training crop and evaluation crop (paper: 513)
    lrg: int | None = None  # decoder grid size s; None = the native stride-4 grid
    prune_rate: float = 0.0  # SFP rate of the encoder (residual-internal channels, ASPP)
    decoder_prune_rate: float = 0.0  # SFP rate of the decoder convs (paper: 0.2 when pruning)
    # block-wise training labels at this band limit; None = pixel-wise
    annotation_nu_max: int | None = None
    epochs: int = 1  # paper: 100 (VOC), 600 (DeepGlobe), 200 (Cityscapes)
    batch_size: int = 8  # paper: 8
    lr: float = 0.007  # initial SGD learning rate, decayed by the poly schedule
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9  # lr = lr0 * (1 - iter / max_iter) ** poly_power
    seed: int = 0  # seeds weights, data order, augmentation and synthetic data
    device: DeviceName = "auto"  # "auto" picks CUDA when present
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    eval_every: int = 1  # evaluate every this many epochs (and always after the last)
    pretrained: str = "false"  # "false", "true" (timm hub; needs network) or a local weights path
    # "train": train at the LRG; "posthoc": train at the native grid, evaluate at the LRG
    truncation: TruncationMode = "train"
    eval_lrgs: tuple[int, ...] = ()  # extra post-hoc evaluations of the final model at these LRGs
    train_length: int | None = None  # images per training epoch (synthetic size, or a limit)
    eval_length: int | None = None  # images in the evaluation set (synthetic size, or a limit)
    num_threads: int = 1  # CPU threads for this trial (one per trial, so trials share a machine)
    # DataLoader worker processes; None: 4 on a GPU (with pinned memory), 0 on the CPU
    loader_workers: int | None = None
    boundary_width: float = 0.02  # boundary IoU width as a fraction of the image diagonal
    # "compact": FLOPs of the trained network (stride 16, pruned filters removed); "paper": the
    # paper's Table 2 count (stride 32, SFP in He et al.'s ResNet setting); training is the same
    flops_convention: FlopsConvention = "compact"
    extra: dict[str, Any] = field(default_factory=dict)  # data-set options (e.g. image_size)

    def __post_init__(self) -> None:
        _check_choice("model", self.model, tuple(MODELS))  # built in + registered
        _check_choice("dataset", self.dataset, DATASET_NAMES)
        _check_choice("device", self.device, get_args(DeviceName))
        _check_choice("truncation", self.truncation, get_args(TruncationMode))
        _check_choice("flops_convention", self.flops_convention, get_args(FlopsConvention))
        _check_range("input_size", self.input_size, *INPUT_SIZES)
        for name in ("epochs", "batch_size", "eval_every", "num_threads"):
            _check_range(name, getattr(self, name), 1, None)
        for name in ("train_length", "eval_length"):
            if getattr(self, name) is not None:
                _check_range(name, getattr(self, name), 1, None)
        if self.loader_workers is not None:
            _check_range("loader_workers", self.loader_workers, 0, 64)
        for name in ("prune_rate", "decoder_prune_rate"):
            _check_range(name, getattr(self, name), 0.0, MAX_PRUNE_RATE)
        _check_range("lr", self.lr, 0.0, None, low_open=True)
        _check_range("momentum", self.momentum, 0.0, 1.0)
        _check_range("weight_decay", self.weight_decay, 0.0, None)
        # the poly schedule (1 - t) ** p: p < 0 grows without bound and divides by 0 at the end
        _check_range("poly_power", self.poly_power, 0.0, None)
        _check_range("boundary_width", self.boundary_width, 0.0, 1.0, low_open=True)
        native = self.native_lrg
        if self.lrg is not None:
            _check_range("lrg", self.lrg, 3, native)
        for s in self.eval_lrgs:
            _check_range("eval_lrgs", s, 3, native)
        if self.annotation_nu_max is not None:
            _check_range("annotation_nu_max", self.annotation_nu_max, 0, None)
        self._check_num_classes()

    def _check_num_classes(self) -> None:
        if self.num_classes is None:
            return
        _check_range("num_classes", self.num_classes, 2, 255)
        fixed = FIXED_NUM_CLASSES.get(self.dataset)
        if fixed is not None and self.num_classes != fixed:
            raise InputError(
                f"num_classes={self.num_classes} disagrees with data set {self.dataset!r}, "
                f"which has {fixed} classes"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrialConfig:
        """Build from a plain dict (Ray's trial config, CLI flags, MLflow params), coercing strings.

        Unknown keys are an error naming them and listing the valid fields.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(
                f"unknown trial setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        kwargs = {name: _coerce(name, known[name].type, value) for name, value in values.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that :meth:`from_dict` accepts again (used for params and checkpoints)."""
        out = dataclasses.asdict(self)
        out["eval_lrgs"] = list(self.eval_lrgs)
        return out

    def canonical(self) -> TrialConfig:
        """The same experiment with equivalent settings spelled one way: the native grid as
        ``lrg=None`` and a label band limit at or above the image's band as pixel-wise (None)."""
        lrg = None if self.lrg == self.native_lrg else self.lrg
        pixel_wise = not self.uses_blockwise_labels
        annotation = None if pixel_wise else self.annotation_nu_max
        return dataclasses.replace(self, lrg=lrg, annotation_nu_max=annotation)

    @functools.cached_property
    def key(self) -> str:
        """A short stable hash of the canonical experiment (without run-only settings).

        Two configs that train and measure the same thing share a key, whichever sweep or
        strategy ran them: the MLflow tag ``spectral_sweep.config_key`` uses it to match runs.
        """
        values = {
            k: v
            for k, v in self.experiment_settings().items()
            if _KEY_OMITTED_DEFAULTS.get(k, object()) != v
        }
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]

    def experiment_settings(self) -> dict[str, Any]:
        """What this config trains and measures: its canonical settings, less the run-only
        ones (the key hashes them; a resumed checkpoint must match them)."""
        return {k: v for k, v in self.canonical().to_dict().items() if k not in RUN_ONLY_FIELDS}

    @property
    def weights_path(self) -> str | None:
        """``pretrained`` when it names a weights file (not ``"false"`` or ``"true"``)."""
        return None if self.pretrained in ("false", "true") else self.pretrained

    @property
    def native_lrg(self) -> int:
        """The decoder's native stride-4 grid for this input (129 at 513)."""
        return native_grid_size(self.input_size)

    @property
    def effective_lrg(self) -> int:
        """The grid the decoder is evaluated at: the LRG, else the native grid."""
        return self.lrg if self.lrg is not None else self.native_lrg

    @property
    def nu_max(self) -> int:
        """The band limit of the effective grid, ``(s - 1) // 2``."""
        return band_of_lrg(self.effective_lrg)

    @property
    def image_band(self) -> int:
        """The image's own band (256 at 513): labels at or above it are pixel-wise."""
        return native_band(self.input_size)

    @property
    def label_band(self) -> int:
        """The band of the training labels: ``annotation_nu_max``, else the image's band."""
        if self.annotation_nu_max is None:
            return self.image_band
        return min(self.annotation_nu_max, self.image_band)

    @property
    def is_native(self) -> bool:
        """Whether the decoder runs at its native grid (a truncation group's reference)."""
        return self.effective_lrg == self.native_lrg

    @property
    def uses_blockwise_labels(self) -> bool:
        """Whether training labels are band-limited (below the image's native band)."""
        return self.annotation_nu_max is not None and self.annotation_nu_max < self.image_band

    @property
    def train_lrg(self) -> int | None:
        """The grid the model trains at: the LRG, or native for post-hoc truncation."""
        return self.lrg if self.truncation == "train" else None


def evaluation_epochs(cfg: TrialConfig) -> set[int]:
    """Epochs (0-based) after which the trial evaluates: every ``eval_every``, and the last."""
    return {e for e in range(cfg.epochs) if (e + 1) % cfg.eval_every == 0} | {cfg.epochs - 1}


def _check_choice(name: str, value: object, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name}={value!r} is not one of: {', '.join(map(str, choices))}")


def _check_range(
    name: str,
    value: float,
    low: float,
    high: float | None,
    *,
    low_open: bool = False,
) -> None:
    too_low = value <= low if low_open else value < low
    if isinstance(value, float) and math.isnan(value):
        too_low = True
    too_high = (value > high) if high is not None else value == math.inf  # open: finite
    if too_low or too_high:
        bracket = "(" if low_open else "["
        upper = f"{high}]" if high is not None else "inf)"
        raise InputError(f"{name}={value!r} is out of range; expected {bracket}{low}, {upper}")


#: Texts that mean None for an optional setting (CLI flags, params, files).
NONE_STRINGS = frozenset({"none", "null", ""})
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Coerce ``value`` (maybe a string) to the field's declared type, or raise InputError."""
    text = str(annotation)
    optional = "None" in text
    if value is None or (optional and isinstance(value, str) and value.lower() in NONE_STRINGS):
        if optional:
            return None
        raise InputError(f"{name} must not be None")
    try:
        if text.startswith("int"):
            return _to_int(value)
        if text.startswith("float"):
            return float(value)
        if text.startswith("bool"):
            return _to_bool(value)
        if text.startswith("tuple"):
            items = value.replace(",", " ").split() if isinstance(value, str) else value
            return tuple(_to_int(v) for v in items)
        if text.startswith("dict"):
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if name == "pretrained":
            return _pretrained_string(value)
        return str(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}={value!r} is not a valid {text.replace(' | None', '')}") from err


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


def _pretrained_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    lowered = str(value).lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE | NONE_STRINGS:
        return "false"
    return str(value)
