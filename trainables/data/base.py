"""The segmentation data-set base class, the common build request and file readers.

Every data set yields ``(image, label)``: image float32 ``(3, S, S)`` normalised with the
ImageNet mean/std, label int64 ``(S, S)`` with class ids ``0 .. C-1`` and 255 = ignore, where
``S`` is the input size. Subclasses only say how to list samples and read one raw image and
label; cropping, augmentation, normalisation and the label check live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from trainables.data.transforms import IGNORE_INDEX, EvalTransform, TrainTransform, normalize
from trainables.errors import InputError

__all__ = [
    "DatasetRequest",
    "PairedFileDataset",
    "SegmentationDataset",
    "read_index_mask",
    "read_rgb",
    "read_rgb_image",
]

#: PIL modes whose pixel values are class indices (palette PNGs read as their indices).
INDEX_MODES = ("P", "L", "I", "I;16", "I;16B", "I;16L")


@dataclass(frozen=True)
class DatasetRequest:
    """The keywords every data set takes, checked by :func:`trainables.data.build_dataset`."""

    name: str  # registry name
    root: Path | None  # on-disk root (None for generated data)
    split: str  # "train", "val", ... (each data set lists its own)
    input_size: int  # square output side S (paper: 513)
    augment: bool  # training augmentation (else the deterministic eval crop)
    num_classes: int | None  # None: the data set's own count
    seed: int  # generated data only: the random stream

    def require_root(self) -> Path:
        """The root, or an InputError when none was given or it does not exist."""
        if self.root is None:
            raise InputError(
                f"data set {self.name!r} needs a root directory (--data-root); got None"
            )
        if not self.root.is_dir():
            raise InputError(f"data root {str(self.root)!r} of {self.name!r} is not a directory")
        return self.root

    def fixed_classes(self, count: int) -> None:
        """Check a given ``num_classes`` against a data set with a fixed class count."""
        if self.num_classes is not None and self.num_classes != count:
            raise InputError(
                f"num_classes={self.num_classes} disagrees with data set {self.name!r}, "
                f"which has {count} classes"
            )


class SegmentationDataset(Dataset[tuple[Tensor, Tensor]]):
    """Base of every data set: ``(image (3, S, S) float32, label (S, S) int64)`` pairs.

    Subclasses implement ``__len__``, :meth:`load_image`, :meth:`load_label` and
    :meth:`source` (the mask file named in errors); :meth:`load` may be overridden when image
    and label come from one generator. Labels are checked lazily in ``__getitem__``;
    :meth:`validate` checks every mask up front.
    """

    def __init__(
        self, request: DatasetRequest, class_names: Sequence[str], *, name: str | None = None
    ) -> None:
        self.name = name or request.name
        self.split = request.split
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = IGNORE_INDEX
        self.input_size = request.input_size
        self.augment = request.augment
        self.transform: TrainTransform | EvalTransform = (
            TrainTransform(request.input_size)
            if request.augment
            else EvalTransform(request.input_size)
        )
        self.eval_transform = EvalTransform(request.input_size)

    # -- what subclasses provide ------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def load_image(self, index: int) -> Tensor:
        """Raw image ``(3, H, W)`` float32 in ``[0, 1]``."""
        raise NotImplementedError

    def load_label(self, index: int) -> Tensor:
        """Raw label ``(H, W)`` int64 in the data set's class ids (not yet checked)."""
        raise NotImplementedError

    def source(self, index: int) -> str:
        """Where sample ``index``'s label comes from (a path), for error messages."""
        return f"{self.name} sample {index}"

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        """Raw image and label of one sample, checked to agree in size."""
        image, label = self.load_image(index), self.load_label(index)
        if image.shape[1:] != label.shape:
            raise InputError(
                f"mask {self.source(index)} is {label.shape[1]}x{label.shape[0]} but its image "
                f"is {image.shape[2]}x{image.shape[1]}"
            )
        return image, label

    # -- shared behaviour ------------------------------------------------------------------

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        index = self._index(index)
        image, label = self.load(index)
        self.check_label(label, index)
        image, label = self.transform(image, label)
        return normalize(image), label

    def label(self, index: int) -> Tensor:
        """Checked label of sample ``index`` through the eval crop, without reading the image."""
        index = self._index(index)
        label = self.load_label(index)
        self.check_label(label, index)
        return self.eval_transform.label(label)

    def check_label(self, label: Tensor, index: int) -> None:
        """InputError naming the mask and the value when a label is neither a class nor 255."""
        bad = (label != self.ignore_index) & ((label < 0) | (label >= self.num_classes))
        if bool(bad.any()):
            value = int(label[bad][0])
            raise InputError(
                f"mask {self.source(index)} has value {value}; expected class ids "
                f"0..{self.num_classes - 1} or {self.ignore_index} (ignore)"
            )

    def validate(self) -> int:
        """Read and check every label; returns how many were checked."""
        for index in range(len(self)):
            self.check_label(self.load_label(index), index)
        return len(self)

    def _index(self, index: int) -> int:
        size = len(self)
        if not -size <= index < size:
            raise IndexError(f"index {index} out of range for {self.name!r} of length {size}")
        return index % size

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, len={len(self)}, "
            f"num_classes={self.num_classes}, input_size={self.input_size}, "
            f"augment={self.augment})"
        )


class PairedFileDataset(SegmentationDataset):
    """A data set of image files each paired with a mask file (VOC, Cityscapes, DeepGlobe, a
    folder). Subclasses fill :attr:`images` and :attr:`masks` (same order) in ``__init__``;
    masks are read as index PNGs unless :meth:`load_label` is overridden."""

    images: list[Path]  # image file of each sample
    masks: list[Path]  # mask file of each sample (named in errors)

    def __len__(self) -> int:
        return len(self.images)

    def source(self, index: int) -> str:
        return str(self.masks[index])

    def load_image(self, index: int) -> Tensor:
        return read_rgb_image(self.images[index])

    def load_label(self, index: int) -> Tensor:
        return read_index_mask(self.masks[index])


# --------------------------------------------------------------------------- readers


def _open(path: Path) -> Image.Image:
    """Open and decode an image file, or an InputError naming it."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise InputError(f"file {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"cannot read image {str(path)!r}: {err}") from None
    return image


def read_rgb(path: Path) -> np.ndarray:
    """An image file as a ``(H, W, 3)`` uint8 array."""
    return np.asarray(_open(path).convert("RGB"))


def read_rgb_image(path: Path) -> Tensor:
    """An image file as a float32 ``(3, H, W)`` tensor in ``[0, 1]``."""
    return torch.from_numpy(read_rgb(path).copy()).permute(2, 0, 1).float().div_(255.0)


def read_index_mask(path: Path) -> Tensor:
    """An index or palette PNG as an int64 ``(H, W)`` tensor of its pixel values (indices)."""
    image = _open(path)
    if image.mode not in INDEX_MODES:
        raise InputError(
            f"mask {str(path)!r} has mode {image.mode!r}; expected an index or palette PNG "
            f"(one of {', '.join(INDEX_MODES)})"
        )
    return torch.from_numpy(np.asarray(image).astype(np.int64))
