"""Joint image/label transforms: the paper's training augmentation and its 513 x 513 eval crop.

Images are float ``(3, H, W)`` tensors in ``[0, 1]``, labels long ``(H, W)`` with 255 = ignore.
Images resize bilinearly, labels by nearest neighbour (class ids never blend). Padding fills the
image with the ImageNet mean (0 after normalisation) and the label with ignore, so padded pixels
add nothing to the loss. Randomness comes from torch's global generator, which the trial seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.errors import InputError

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalTransform",
    "TrainTransform",
    "centre_crop",
    "normalize",
    "pad_label",
    "pad_to",
    "rescale",
]

#: Label value of pixels that count for nothing (borders, padding, unlabelled).
IGNORE_INDEX = 255
#: ImageNet channel statistics (the encoders' pre-training), images in [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(image: Tensor) -> Tensor:
    """``(image - mean) / std`` per channel, float32."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=image.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=image.device)[:, None, None]
    return (image.float() - mean) / std


def rescale(image: Tensor, label: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Resize both by ``scale`` (image bilinear, antialiased when shrinking; label nearest)."""
    height, width = label.shape
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return image, label
    image = F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=scale < 1
    )[0]
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, label


def _offsets(height: int, width: int, size: int, centre: bool) -> tuple[int, int, int, int]:
    """``(pad_h, pad_w, top, left)`` padding an ``H x W`` map to at least ``size x size``."""
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    top, left = (pad_h // 2, pad_w // 2) if centre else (0, 0)
    return pad_h, pad_w, top, left


def pad_label(
    label: Tensor, size: int, *, centre: bool, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """``label`` padded with ``ignore_index`` to at least ``size x size`` (see :func:`pad_to`)."""
    height, width = label.shape
    pad_h, pad_w, top, left = _offsets(height, width, size, centre)
    if not pad_h and not pad_w:
        return label
    out = label.new_full((height + pad_h, width + pad_w), ignore_index)
    out[top : top + height, left : left + width] = label
    return out


def pad_to(
    image: Tensor, label: Tensor, size: int, *, centre: bool, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Pad both to at least ``size x size``: image with the mean colour, label with ignore.

    ``centre``: split the padding evenly between the sides; else pad bottom and right.
    """
    height, width = label.shape
    pad_h, pad_w, top, left = _offsets(height, width, size, centre)
    if not pad_h and not pad_w:
        return image, label
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device)
    out = mean[:, None, None].expand(3, height + pad_h, width + pad_w).clone()
    out[:, top : top + height, left : left + width] = image
    return out, pad_label(label, size, centre=centre, ignore_index=ignore_index)


def centre_crop(image: Tensor, label: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The central ``size x size`` window of both (each side at least ``size``)."""
    height, width = label.shape
    top, left = (height - size) // 2, (width - size) // 2
    return (
        image[:, top : top + size, left : left + size],
        label[top : top + size, left : left + size],
    )


def _check_size(size: int) -> None:
    if size < 1:
        raise InputError(f"crop size {size} must be >= 1")


@dataclass(frozen=True)
class TrainTransform:
    """Random scale, pad with ignore/mean, random ``crop_size`` crop, random horizontal flip."""

    crop_size: int  # square output side (paper: 513)
    scale_range: tuple[float, float] = (0.5, 2.0)  # uniform random rescale factor
    flip: bool = True  # mirror left-right with probability 1/2
    ignore_index: int = IGNORE_INDEX  # label fill of the padding

    def __post_init__(self) -> None:
        _check_size(self.crop_size)
        low, high = self.scale_range
        if not 0 < low <= high:
            raise InputError(f"scale range {self.scale_range} must satisfy 0 < low <= high")

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        image, label = rescale(image, label, scale)
        size = self.crop_size
        image, label = pad_to(image, label, size, centre=False, ignore_index=self.ignore_index)
        height, width = label.shape
        top = int(torch.randint(0, height - size + 1, ()))
        left = int(torch.randint(0, width - size + 1, ()))
        image = image[:, top : top + size, left : left + size]
        label = label[top : top + size, left : left + size]
        if self.flip and float(torch.rand(())) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image.contiguous(), label.contiguous()


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic padded centre crop to ``crop_size`` (the paper evaluates 513 x 513 crops)."""

    crop_size: int  # square output side
    ignore_index: int = IGNORE_INDEX  # label fill of the padding

    def __post_init__(self) -> None:
        _check_size(self.crop_size)

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        image, label = pad_to(
            image, label, self.crop_size, centre=True, ignore_index=self.ignore_index
        )
        image, label = centre_crop(image, label, self.crop_size)
        return image.contiguous(), label.contiguous()

    def label(self, label: Tensor) -> Tensor:
        """The label alone through the same crop (no image needed)."""
        padded = pad_label(label, self.crop_size, centre=True, ignore_index=self.ignore_index)
        height, width = padded.shape
        top, left = (height - self.crop_size) // 2, (width - self.crop_size) // 2
        return padded[top : top + self.crop_size, left : left + self.crop_size].contiguous()
