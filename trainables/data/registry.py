"""The data-set factory, :func:`build_dataset`, over the one registry.

The registry (:mod:`trainables.dataset_registry`, torch-free so the config can check names) names
each builder ``(request, **options) -> SegmentationDataset``, the options it accepts and a fixed
class count, so a typo in a name or an option, or a wrong class count, fails at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.data.base import DatasetRequest, SegmentationDataset
from trainables.dataset_registry import DatasetSpec, dataset_spec, list_datasets
from trainables.errors import InputError

__all__ = ["DatasetSpec", "build_dataset", "dataset_spec", "list_datasets"]


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
    if spec.num_classes is not None:
        request.fixed_classes(spec.num_classes)
    built: SegmentationDataset = spec.build(request, **options)
    return built
