"""PASCAL VOC 2012 segmentation (21 classes), optionally with the SBD augmented training set.

Published layout (``root`` may be the directory holding ``VOCdevkit``, ``VOCdevkit`` itself, or
``VOC2012``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png          palette PNG; 255 = border (ignore)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png       optional SBD masks (index PNG)
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt  split "train_aug"

A split ending in ``_aug`` reads its masks from ``SegmentationClassAug``. Its list may hold ids
or ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` pairs. torchvision's
``VOCSegmentation`` is not reused: it only accepts the three standard splits, wants the
directory above ``VOCdevkit`` and cannot read SBD lists; this reader is as short.
"""

from __future__ import annotations

from pathlib import Path

from trainables.data.base import DatasetRequest, PairedFileDataset
from trainables.errors import InputError

__all__ = ["VOC_CLASSES", "VOCSegmentation", "build_voc", "find_voc_root", "read_split_ids"]

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def find_voc_root(root: Path) -> Path:
    """The ``VOC2012`` directory under ``root`` (or ``root`` itself), or an InputError."""
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise InputError(
        f"no PASCAL VOC 2012 under {str(root)!r}: expected VOCdevkit/VOC2012/JPEGImages"
    )


def read_split_ids(path: Path) -> list[str]:
    """Sample ids of a split list: one id per line, or ``image mask`` path pairs (SBD)."""
    if not path.is_file():
        raise InputError(f"split file {str(path)!r} does not exist")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(Path(line.split()[0]).stem)
    if not ids:
        raise InputError(f"split file {str(path)!r} lists no samples")
    return ids


class VOCSegmentation(PairedFileDataset):
    """PASCAL VOC 2012 images with their palette masks (index values, 255 = ignore)."""

    def __init__(self, request: DatasetRequest) -> None:
        super().__init__(request, VOC_CLASSES)
        self.root = find_voc_root(request.require_root())
        masks = "SegmentationClassAug" if request.split.endswith("_aug") else "SegmentationClass"
        self.mask_dir = self.root / masks
        split_file = self.root / "ImageSets" / "Segmentation" / f"{request.split}.txt"
        self.ids = read_split_ids(split_file)
        for sample in self.ids:
            if not (self.root / "JPEGImages" / f"{sample}.jpg").is_file():
                raise InputError(
                    f"image {sample!r} of {str(split_file)!r} is missing in JPEGImages"
                )
            if not (self.mask_dir / f"{sample}.png").is_file():
                raise InputError(f"image {sample!r} has no mask in {str(self.mask_dir)!r}")
        self.images = [self.root / "JPEGImages" / f"{sample}.jpg" for sample in self.ids]
        self.masks = [self.mask_dir / f"{sample}.png" for sample in self.ids]


def build_voc(request: DatasetRequest) -> VOCSegmentation:
    """``voc``: PASCAL VOC 2012 (+ SBD with split ``train_aug``), 21 classes. No options."""
    return VOCSegmentation(request)
