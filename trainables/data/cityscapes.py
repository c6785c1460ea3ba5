"""Cityscapes fine annotations, mapped from label ids to the 19 training ids.

Published layout under ``root``::

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

Label ids map to train ids by the official table (cityscapesScripts ``labels.py``); every other
id (void, license plate, ...) becomes 255 = ignore, so no mask value is out of range.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from trainables.data.base import DatasetRequest, PairedFileDataset, read_index_mask
from trainables.errors import InputError

__all__ = ["CITYSCAPES_CLASSES", "LABEL_TO_TRAIN_ID", "CityscapesSegmentation", "build_cityscapes"]

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
#: Official labelId -> trainId for the 19 evaluated classes; all other ids are ignored.
LABEL_TO_TRAIN_ID: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"


def _lookup_table(ignore_index: int) -> Tensor:
    """``table[label_id] = train_id`` for every 16-bit value (255 where not a train class)."""
    table = torch.full((65536,), ignore_index, dtype=torch.long)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


class CityscapesSegmentation(PairedFileDataset):
    """Cityscapes ``leftImg8bit`` images with ``gtFine`` labels as train ids."""

    def __init__(self, request: DatasetRequest) -> None:
        super().__init__(request, CITYSCAPES_CLASSES)
        root = request.require_root()
        if request.split == "test":
            raise InputError(
                "Cityscapes split 'test' has no public labels (its gtFine masks hold only void "
                "ids, so every pixel would be ignored); use split 'val'"
            )
        image_dir = root / "leftImg8bit" / request.split
        if not image_dir.is_dir():
            raise InputError(f"Cityscapes split directory {str(image_dir)!r} does not exist")
        self.mask_dir = root / "gtFine" / request.split
        self.images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not self.images:
            raise InputError(f"no *{IMAGE_SUFFIX} images under {str(image_dir)!r}")
        self.masks = [self._mask_of(path) for path in self.images]
        self._table = _lookup_table(self.ignore_index)

    def _mask_of(self, image: Path) -> Path:
        stem = image.name.removesuffix(IMAGE_SUFFIX)
        mask = self.mask_dir / image.parent.name / f"{stem}{MASK_SUFFIX}"
        if not mask.is_file():
            raise InputError(f"image {stem!r} has no mask {str(mask)!r}")
        return mask

    def load_label(self, index: int) -> Tensor:
        label_ids = read_index_mask(self.masks[index])
        return self._table[label_ids.clamp(0, self._table.numel() - 1)]


def build_cityscapes(request: DatasetRequest) -> CityscapesSegmentation:
    """``cityscapes``: fine annotations, 19 train ids (splits train and val: the test labels
    are not public). No options."""
    return CityscapesSegmentation(request)
