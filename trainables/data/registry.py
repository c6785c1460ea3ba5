"""The one data-set registry and its factory, :func:`build_dataset`.

Each entry names a builder ``(request, **options) -> SegmentationDataset`` and the options it
accepts, so a typo in a name or an option fails at once with the valid choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.data.base import DatasetRequest, SegmentationDataset
from trainables.data.cityscapes import build_cityscapes
from trainables.data.deepglobe import build_deepglobe
from trainables.data.folder import build_folder
from trainables.data.synthetic import build_fine, build_smooth
from trainables.data.voc import build_voc
from trainables.errors import InputError

__all__ = ["DatasetSpec", "build_dataset", "dataset_spec", "list_datasets"]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: how to build it and what it accepts."""

    name: str  # registry name, as in TrialConfig.dataset
    build: Callable[..., SegmentationDataset]  # (request, **options) -> data set
    summary: str  # one line for --help and listings
    needs_root: bool = True  # False for generated data
    options: tuple[str, ...] = ()  # extra keyword options the builder takes


_SYNTHETIC_OPTIONS = ("length", "image_size")
_REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "synthetic-smooth",
            build_smooth,
            "generated large smooth blobs (like PASCAL VOC / DeepGlobe)",
            needs_root=False,
            options=_SYNTHETIC_OPTIONS,
        ),
        DatasetSpec(
            "synthetic-fine",
            build_fine,
            "generated thin structures and small objects (like Cityscapes)",
            needs_root=False,
            options=_SYNTHETIC_OPTIONS,
        ),
        DatasetSpec("voc", build_voc, "PASCAL VOC 2012 (+SBD train_aug), 21 classes"),
        DatasetSpec("cityscapes", build_cityscapes, "Cityscapes gtFine, 19 train ids"),
        DatasetSpec("deepglobe", build_deepglobe, "DeepGlobe land cover, 7 classes, 701/102"),
        DatasetSpec("folder", build_folder, "images/ + masks/ folder of index PNGs"),
    )
}


def list_datasets() -> list[str]:
    """Registered data-set names, in registration order."""
    return list(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``, or an InputError listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown data set {name!r}; choose from: {', '.join(list_datasets())}"
        ) from None


def _check_int(name: str, value: Any, low: int | None) -> int:
    """``value`` if it is an int (not a bool) of at least ``low``, else an InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise InputError(f"{name}={value!r} must be an integer{bound}")
    return value


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    *,
    input_size: int = 513,
    augment: bool | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    **options: Any,
) -> SegmentationDataset:
    """Build the registered data set ``name`` for ``split``.

    Samples are ``(image float32 (3, S, S) normalised, label int64 (S, S), 255 = ignore)`` with
    ``S = input_size``. ``augment`` defaults to on for training splits (names starting with
    ``train``): random scale 0.5-2, crop, flip; otherwise the padded centre crop. ``options``
    are data-set specific (``length``, ``image_size`` for the synthetic sets). Bad names,
    options, values or files raise :class:`InputError`.
    """
    spec = dataset_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise InputError(
            f"unknown option {unknown[0]!r} for data set {name!r}; accepted: {accepted}"
        )
    if not isinstance(split, str) or not split:
        raise InputError(f"split {split!r} must be a non-empty name such as 'train' or 'val'")
    request = DatasetRequest(
        name=name,
        root=None if root is None else Path(root).expanduser(),
        split=split,
        input_size=_check_int("input_size", input_size, 1),
        augment=split.startswith("train") if augment is None else bool(augment),
        num_classes=None if num_classes is None else _check_int("num_classes", num_classes, 1),
        seed=_check_int("seed", seed, None),
    )
    if spec.needs_root:
        request.require_root()
    return spec.build(request, **options)
