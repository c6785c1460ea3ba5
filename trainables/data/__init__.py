"""Segmentation data: the data-set registry, joint transforms and block-wise labels.

``build_dataset(name, root, split, input_size=..., ...)`` gives a :class:`SegmentationDataset`
of ``(image (3, S, S) float32 normalised, label (S, S) int64, 255 = ignore)`` pairs for PASCAL
VOC (+SBD), Cityscapes, DeepGlobe, a plain ``images/`` + ``masks/`` folder, or generated data
(``synthetic-smooth`` / ``synthetic-fine``). ``blockwise_labels`` makes the paper's band-limited
annotation.
"""

from __future__ import annotations

from trainables.data.base import DatasetRequest, SegmentationDataset
from trainables.data.blockwise import blockwise_grid, blockwise_labels
from trainables.data.registry import DatasetSpec, build_dataset, dataset_spec, list_datasets
from trainables.data.transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    normalize,
)

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DatasetRequest",
    "DatasetSpec",
    "EvalTransform",
    "SegmentationDataset",
    "TrainTransform",
    "blockwise_grid",
    "blockwise_labels",
    "build_dataset",
    "dataset_spec",
    "list_datasets",
    "normalize",
]
