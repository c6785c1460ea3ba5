"""Generated segmentation data with a controlled boundary frequency: nothing to download.

Sample ``i`` of a split is a pure function of ``(seed, split, i)`` (numpy ``SeedSequence``), so
every worker and every run sees the same data. Two kinds:

- ``synthetic-smooth``: a few large blobs (arg-max of low-pass noise fields), like PASCAL VOC or
  DeepGlobe: label energy sits in the lowest bands.
- ``synthetic-fine``: busier regions plus thin lines, stripe patches and small blobs, like
  Cityscapes: far more label energy above every band limit.

Images depend on the class through a fixed mean colour and a fixed texture (oriented sinusoid)
per class, plus per-image noise, so a network has to learn colour and texture; a tiny CNN does so
in a few epochs at 33-65 pixels.
"""

from __future__ import annotations

import colorsys
import zlib
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.data.base import DatasetRequest, SegmentationDataset
from trainables.errors import InputError

__all__ = ["SyntheticSegmentation", "build_fine", "build_smooth"]

Kind = Literal["smooth", "fine"]

#: Default class count and lengths per split.
DEFAULT_NUM_CLASSES = 5
DEFAULT_LENGTHS = {"train": 64}
DEFAULT_EVAL_LENGTH = 16
#: Low-pass cut-off of the class fields, in cycles per image (scale-free).
CUTOFF: dict[str, float] = {"smooth": 1.5, "fine": 4.0}
#: Image model: texture amplitude and noise standard deviation (image values in [0, 1]).
TEXTURE_AMPLITUDE = 0.12
NOISE_STD = 0.06
#: Largest grid the low-pass class fields are drawn on (then upsampled).
FIELD_GRID = 128


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, or an InputError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}={value!r} must be an integer")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name}={value} must be {bounds}")
    return int(value)


def class_colours(num_classes: int) -> np.ndarray:
    """A fixed, well-spread mean colour per class: ``(C, 3)`` float in [0.2, 0.8]."""
    colours = []
    for c in range(num_classes):
        hue = (c * 0.618033988749895) % 1.0
        saturation = 0.75 if c % 2 == 0 else 0.45
        value = 0.8 if (c // 2) % 2 == 0 else 0.55
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return 0.2 + 0.6 * np.asarray(colours, dtype=np.float64)


def class_textures(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: texture orientation (radians) and period (pixels), fixed."""
    classes = np.arange(num_classes)
    angle = np.pi * ((classes * 0.381966011250105) % 1.0)
    period = 3.0 + (classes % 4)
    return angle, period


def _lowpass(rng: np.random.Generator, count: int, size: int, cutoff: float) -> np.ndarray:
    """``count`` Gaussian random fields of ``size x size`` with a Gaussian spectrum of width
    ``cutoff`` cycles per image (a scale-free smoothness).

    Fields are drawn on at most a ``FIELD_GRID`` grid (which holds every frequency the envelope
    keeps) and bicubically upsampled, so large images cost no large FFTs.
    """
    grid = min(size, FIELD_GRID)
    noise = rng.standard_normal((count, grid, grid))
    fy = np.fft.fftfreq(grid) * grid
    fx = np.fft.rfftfreq(grid) * grid
    envelope = np.exp(-(fy[:, None] ** 2 + fx[None, :] ** 2) / (2.0 * cutoff**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * envelope, s=(grid, grid))
    if grid == size:
        return field
    up = F.interpolate(torch.from_numpy(field).float()[None], size=(size, size), mode="bicubic")
    return up[0].numpy()


def _blobs(rng: np.random.Generator, classes: int, size: int, cutoff: float) -> np.ndarray:
    """Arg-max of one low-pass field per class: smooth regions covering the image."""
    return _lowpass(rng, classes, size, cutoff).argmax(axis=0)


def _fine_details(rng: np.random.Generator, label: np.ndarray, classes: int) -> np.ndarray:
    """Thin lines, stripe patches and small blobs of random classes drawn over ``label``."""
    size = label.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    width = max(1.0, size / 48.0)
    for _ in range(int(rng.integers(4, 9))):  # thin straight lines (poles, lane marks)
        angle = rng.uniform(0.0, np.pi)
        offset = rng.uniform(-size / 2, size / 2)
        signed = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)
        label[np.abs(signed - offset) < width / 2 + 0.25] = rng.integers(classes)
    for _ in range(int(rng.integers(1, 3))):  # stripe patches (fences, crossings)
        top, left = rng.integers(0, size, 2)
        extent = max(4, size // 3)
        period = max(2, round(size / 16))
        patch = (slice(top, top + extent), slice(left, left + extent))
        stripes = (xx[patch] // period) % 2 == 0
        label[patch] = np.where(stripes, rng.integers(classes), label[patch])
    radius = max(1.0, size / 32.0)
    for _ in range(int(rng.integers(8, 17))):  # small objects
        cy, cx = rng.uniform(0, size, 2)
        r = radius * rng.uniform(0.7, 1.6)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(classes)
    return label


def _render(rng: np.random.Generator, label: np.ndarray, classes: int) -> np.ndarray:
    """Image ``(3, H, W)`` in [0, 1]: class colour + class texture + noise."""
    size = label.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    colour = class_colours(classes)[label]  # (H, W, 3)
    angle, period = class_textures(classes)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    a, p = angle[label], period[label]
    texture = np.sin(2.0 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / p + phase)
    image = colour + TEXTURE_AMPLITUDE * texture[..., None]
    image += NOISE_STD * rng.standard_normal(image.shape)
    return np.clip(image, 0.0, 1.0).transpose(2, 0, 1)


class SyntheticSegmentation(SegmentationDataset):
    """``length`` generated samples of ``image_size x image_size`` (see the module docstring)."""

    def __init__(
        self, request: DatasetRequest, kind: Kind, length: int, image_size: int, classes: int
    ) -> None:
        super().__init__(request, [f"class_{c}" for c in range(classes)])
        self.kind = kind
        self.length = length
        self.image_size = image_size
        self.seed = request.seed
        self._split_code = zlib.crc32(request.split.encode())

    def __len__(self) -> int:
        return self.length

    def source(self, index: int) -> str:
        return f"{self.name} {self.split} sample {index} (seed {self.seed})"

    def _rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        """Independent label and image streams of sample ``index``."""
        entropy = [self.seed & 0xFFFFFFFFFFFFFFFF, self._split_code, index]
        label_seq, image_seq = np.random.SeedSequence(entropy).spawn(2)
        return np.random.default_rng(label_seq), np.random.default_rng(image_seq)

    def _label_array(self, rng: np.random.Generator) -> np.ndarray:
        label = _blobs(rng, self.num_classes, self.image_size, CUTOFF[self.kind])
        if self.kind == "fine":
            label = _fine_details(rng, label, self.num_classes)
        return label

    def load_label(self, index: int) -> Tensor:
        label_rng, _ = self._rngs(index)
        return torch.from_numpy(self._label_array(label_rng).astype(np.int64))

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        label_rng, image_rng = self._rngs(index)
        label = self._label_array(label_rng)
        image = _render(image_rng, label, self.num_classes)
        return torch.from_numpy(image.astype(np.float32)), torch.from_numpy(label.astype(np.int64))

    def load_image(self, index: int) -> Tensor:
        return self.load(index)[0]


def _build(
    request: DatasetRequest, kind: Kind, length: int | None, image_size: int | None
) -> SyntheticSegmentation:
    classes = _check_int(
        "num_classes",
        DEFAULT_NUM_CLASSES if request.num_classes is None else request.num_classes,
        2,
        255,
    )
    default_length = DEFAULT_LENGTHS.get(request.split, DEFAULT_EVAL_LENGTH)
    length = _check_int("length", default_length if length is None else length, 1)
    size = _check_int("image_size", request.input_size if image_size is None else image_size, 8)
    return SyntheticSegmentation(request, kind, length, size, classes)


def build_smooth(
    request: DatasetRequest, *, length: int | None = None, image_size: int | None = None
) -> SyntheticSegmentation:
    """``synthetic-smooth``: large smooth blobs. Options: ``length``, ``image_size``."""
    return _build(request, "smooth", length, image_size)


def build_fine(
    request: DatasetRequest, *, length: int | None = None, image_size: int | None = None
) -> SyntheticSegmentation:
    """``synthetic-fine``: thin structures and small objects. Options as ``synthetic-smooth``."""
    return _build(request, "fine", length, image_size)
