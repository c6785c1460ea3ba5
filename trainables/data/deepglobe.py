"""DeepGlobe land cover (7 classes from RGB colour codes), with a fixed 701/102 train/val split.

Published layout: ``root/train/<id>_sat.jpg`` and ``root/train/<id>_mask.png`` (``root`` may
also be the ``train`` directory itself). Only the 803 training images have masks, so the paper's
split is made here: sorted ids, a permutation with a fixed seed (independent of the trial seed,
so every trial evaluates on the same images), the last 102/803 of it for ``val``. With fewer
images on disk the same proportion is kept (at least one of each with two or more images).

Masks are RGB, each channel thresholded at 128 (the published files are not clean 0/255):
urban (0,255,255) 0, agriculture (255,255,0) 1, rangeland (255,0,255) 2, forest (0,255,0) 3,
water (0,0,255) 4, barren (255,255,255) 5, unknown (0,0,0) 6. The one remaining code, red
(255,0,0), is no class and becomes 255 = ignore.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trainables.data.base import DatasetRequest, PairedFileDataset, read_rgb
from trainables.errors import InputError

__all__ = [
    "DEEPGLOBE_CLASSES",
    "DeepGlobeSegmentation",
    "build_deepglobe",
    "decode_mask",
    "split_ids",
]

DEEPGLOBE_CLASSES: tuple[str, ...] = (
    "urban_land",
    "agriculture_land",
    "rangeland",
    "forest_land",
    "water",
    "barren_land",
    "unknown",
)
#: Class of each thresholded colour code 4 R + 2 G + B (red, code 4, is ignored).
CODE_TO_CLASS = np.array([6, 4, 3, 0, 255, 2, 1, 5], dtype=np.int64)
#: The published training set and the paper's split of it.
TOTAL_IMAGES, VAL_IMAGES = 803, 102
SPLIT_SEED = 803
SPLITS = ("train", "val")


def decode_mask(rgb: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 colour mask -> int64 class ids (threshold 128 per channel)."""
    bits = (rgb >= 128).astype(np.int64)
    code = 4 * bits[..., 0] + 2 * bits[..., 1] + bits[..., 2]
    return torch.from_numpy(CODE_TO_CLASS[code])


def split_ids(ids: list[str], split: str) -> list[str]:
    """The ``split`` ("train" or "val") part of ``ids``: a fixed-seed permutation of the sorted
    ids whose last ``round(n * 102 / 803)`` entries (at least 1 when ``n >= 2``) are ``val``."""
    ordered = sorted(ids)
    count = len(ordered)
    n_val = round(count * VAL_IMAGES / TOTAL_IMAGES)
    if count >= 2:
        n_val = min(max(n_val, 1), count - 1)
    random.Random(SPLIT_SEED).shuffle(ordered)
    chosen = ordered[count - n_val :] if split == "val" else ordered[: count - n_val]
    return sorted(chosen)


def _image_dir(root: Path) -> Path:
    for candidate in (root / "train", root):
        if any(candidate.glob("*_sat.jpg")):
            return candidate
    raise InputError(
        f"no DeepGlobe *_sat.jpg images under {str(root)!r} or {str(root / 'train')!r}"
    )


class DeepGlobeSegmentation(PairedFileDataset):
    """DeepGlobe land-cover tiles with their colour masks decoded to 7 classes."""

    def __init__(self, request: DatasetRequest) -> None:
        super().__init__(request, DEEPGLOBE_CLASSES)
        if request.split not in SPLITS:
            raise InputError(
                f"unknown DeepGlobe split {request.split!r}; choose from: {', '.join(SPLITS)}"
            )
        self.image_dir = _image_dir(request.require_root())
        ids = [path.name.removesuffix("_sat.jpg") for path in self.image_dir.glob("*_sat.jpg")]
        for sample in sorted(ids):
            if not self._mask(sample).is_file():
                raise InputError(f"image {sample!r} has no mask {str(self._mask(sample))!r}")
        self.ids = split_ids(ids, request.split)
        if not self.ids:
            raise InputError(
                f"DeepGlobe split {request.split!r} is empty: {len(ids)} image(s) under "
                f"{str(self.image_dir)!r}"
            )
        self.images = [self.image_dir / f"{sample}_sat.jpg" for sample in self.ids]
        self.masks = [self._mask(sample) for sample in self.ids]

    def _mask(self, sample: str) -> Path:
        return self.image_dir / f"{sample}_mask.png"

    def load_label(self, index: int) -> Tensor:
        return decode_mask(read_rgb(self.masks[index]))


def build_deepglobe(request: DatasetRequest) -> DeepGlobeSegmentation:
    """``deepglobe``: land cover, 7 classes, splits train (701) / val (102). No options."""
    return DeepGlobeSegmentation(request)
