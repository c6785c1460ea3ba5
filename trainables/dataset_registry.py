"""The one data-set registry: name -> builder path, options and class count (no torch import).

:class:`~trainables.config.TrialConfig` validates ``dataset`` and ``num_classes`` against it
without importing torch; :func:`trainables.data.build_dataset` imports a builder from its
``"module:attr"`` path only when a data set is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainables.errors import InputError
from trainables.lazy import resolve


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: how to build it and what it accepts."""

    name: str  # registry name, as in TrialConfig.dataset
    builder: str  # "module:attr" of (request, **options) -> SegmentationDataset
    summary: str  # one line for --help and listings
    needs_root: bool = True  # False for generated data
    options: tuple[str, ...] = ()  # extra keyword options the builder takes
    num_classes: int | None = None  # fixed by the published data set; None: any count

    def build(self, request: Any, **options: Any) -> Any:
        """Build the data set for ``request`` (a ``DatasetRequest``), importing its builder."""
        return resolve(self.builder)(request, **options)


_SYNTHETIC_OPTIONS = ("length", "image_size")
_DATA = "trainables.data."
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "synthetic-smooth",
            _DATA + "synthetic:build_smooth",
            "generated large smooth blobs (like PASCAL VOC / DeepGlobe)",
            needs_root=False,
            options=_SYNTHETIC_OPTIONS,
        ),
        DatasetSpec(
            "synthetic-fine",
            _DATA + "synthetic:build_fine",
            "generated thin structures and small objects (like Cityscapes)",
            needs_root=False,
            options=_SYNTHETIC_OPTIONS,
        ),
        DatasetSpec(
            "voc",
            _DATA + "voc:build_voc",
            "PASCAL VOC 2012 (+SBD train_aug), 21 classes",
            num_classes=21,
            options=("train_split",),
        ),
        DatasetSpec(
            "cityscapes",
            _DATA + "cityscapes:build_cityscapes",
            "Cityscapes gtFine, 19 train ids",
            num_classes=19,
        ),
        DatasetSpec(
            "deepglobe",
            _DATA + "deepglobe:build_deepglobe",
            "DeepGlobe land cover, 7 classes, 701/102",
            num_classes=7,
        ),
        DatasetSpec(
            "folder", _DATA + "folder:build_folder", "images/ + masks/ folder of index PNGs"
        ),
    )
}
#: The registered names, in registration order.
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
#: Class counts fixed by the published data sets (synthetic and folder sets take any count).
FIXED_NUM_CLASSES: dict[str, int] = {
    name: spec.num_classes for name, spec in DATASETS.items() if spec.num_classes is not None
}


def list_datasets() -> list[str]:
    """Registered data-set names, in registration order."""
    return list(DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``, or an InputError listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise InputError(
            f"unknown data set {name!r}; choose from: {', '.join(list_datasets())}"
        ) from None


def check_root_applies(name: str, given: str) -> None:
    """A data root (``given``, as the flag showed it) only for a data set read from disk: a
    generated one would ignore it."""
    if not dataset_spec(name).needs_root:
        raise InputError(
            f"--data-root {given}: data set {name!r} is generated from the seed; it reads "
            "nothing from disk"
        )


__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "FIXED_NUM_CLASSES",
    "DatasetSpec",
    "check_root_applies",
    "dataset_spec",
    "list_datasets",
]
