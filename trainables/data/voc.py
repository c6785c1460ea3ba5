"""PASCAL VOC 2012 segmentation (21 classes), optionally with the SBD augmented training set.

Published layouts (``root`` may be the directory holding ``VOCdevkit``, ``VOCdevkit`` itself, or
``VOC2012``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png          palette PNG; 255 = border (ignore)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

and SBD (Hariharan et al. 2011) as its archive unpacks, beside ``VOCdevkit`` (or under
``root``)::

    benchmark_RELEASE/dataset/cls/<id>.mat                GTcls.Segmentation: class ids
    benchmark_RELEASE/dataset/{train,val}.txt

or SBD converted to PNGs, as many DeepLab codebases ship it::

    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png       index PNG
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt  ids, or image/mask path pairs

Split ``train_aug`` (the paper's training set, 10,582 images on the full data) reads the
converted form when its list is there, else SBD's own: VOC ``train`` and SBD ``train`` and
``val``, less VOC ``val``, each with VOC's mask where VOC has one (finer: its borders are
ignore), else SBD's. Option ``train_split`` names the list the ``train`` split reads (a
trial always asks for ``train``). A training list may not hold ``val`` images: the
evaluation would see its training data. torchvision's ``VOCSegmentation`` is not reused: it
only accepts the three standard splits, wants the directory above ``VOCdevkit`` and cannot
read SBD; this reader is as short.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trainables.data.base import DatasetRequest, PairedFileDataset, read_index_mask
from trainables.errors import InputError

__all__ = [
    "AUG_SPLIT",
    "VOC_CLASSES",
    "VOCSegmentation",
    "build_voc",
    "check_disjoint",
    "find_sbd",
    "find_voc_root",
    "read_sbd_mask",
    "read_split_ids",
]

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


#: The SBD augmented training split, and SBD's folder as its archive unpacks.
AUG_SPLIT = "train_aug"
SBD_DATASET = Path("benchmark_RELEASE") / "dataset"
#: File endings a split list's entries may carry (stripped to get the id).
LISTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".mat")


def read_split_ids(path: Path) -> list[str]:
    """Sample ids of a split list: one name per line (a path or a name with an image ending
    gives its last part without the ending; dots and spaces inside a name are kept), or
    ``image mask`` path pairs (SBD lists), which give the image's name."""
    if not path.is_file():
        raise InputError(f"split file {str(path)!r} does not exist")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(_listed_id(line))
    if not ids:
        raise InputError(f"split file {str(path)!r} lists no samples")
    return ids


def _listed_id(line: str) -> str:
    """The sample id of one split-list line (see :func:`read_split_ids`)."""
    fields = line.split()
    if len(fields) == 2 and all(f.lower().endswith(LISTED_SUFFIXES) for f in fields):
        line = fields[0]  # an image/mask pair
    name = Path(line).name
    return name[: name.rfind(".")] if name.lower().endswith(LISTED_SUFFIXES) else name


def find_sbd(root: Path, voc_root: Path) -> Path | None:
    """SBD's ``dataset`` folder under ``root`` or beside ``VOCdevkit``, if there is one."""
    for base in dict.fromkeys((root, voc_root.parent.parent, voc_root.parent)):
        if (base / SBD_DATASET / "cls").is_dir():
            return base / SBD_DATASET
    return None


class VOCSegmentation(PairedFileDataset):
    """PASCAL VOC 2012 images with their palette masks (index values, 255 = ignore), or SBD's
    class maps for the augmented training set."""

    def __init__(self, request: DatasetRequest, train_split: str = "train") -> None:
        super().__init__(request, VOC_CLASSES)
        root = request.require_root()
        self.root = find_voc_root(root)
        self.split_name = train_split if request.split == "train" else request.split
        lists = self.root / "ImageSets" / "Segmentation"
        converted = lists / f"{self.split_name}.txt"
        if self.split_name.endswith("_aug") and not converted.is_file():
            self._read_sbd(root, converted)  # leaves VOC val out itself
            return
        masks = "SegmentationClassAug" if self.split_name.endswith("_aug") else "SegmentationClass"
        self._read_list(converted, self.root / masks)
        if request.split == "train" or self.split_name.endswith("_aug"):  # not trainval
            check_disjoint(self.split_name, self.ids, lists / "val.txt")

    def _read_list(self, split_file: Path, mask_dir: Path) -> None:
        """Images of a VOC list with their masks in ``mask_dir``."""
        self.ids = read_split_ids(split_file)
        for sample in self.ids:
            if not (self.root / "JPEGImages" / f"{sample}.jpg").is_file():
                raise InputError(
                    f"image {sample!r} of {str(split_file)!r} is missing in JPEGImages"
                )
            if not (mask_dir / f"{sample}.png").is_file():
                raise InputError(f"image {sample!r} has no mask in {str(mask_dir)!r}")
        self.images = [self.root / "JPEGImages" / f"{sample}.jpg" for sample in self.ids]
        self.masks = [mask_dir / f"{sample}.png" for sample in self.ids]

    def _read_sbd(self, root: Path, converted: Path) -> None:
        """``train_aug`` from SBD as published: VOC train + SBD train and val - VOC val."""
        sbd = find_sbd(root, self.root) if self.split_name == AUG_SPLIT else None
        if sbd is None:
            raise InputError(
                f"split {self.split_name!r} needs {str(converted)!r} with SegmentationClassAug/, "
                f"or SBD's {SBD_DATASET}/cls beside VOCdevkit under {str(root)!r}"
            )
        lists = self.root / "ImageSets" / "Segmentation"
        val = set(read_split_ids(lists / "val.txt"))
        listed = read_split_ids(lists / "train.txt")
        listed += read_split_ids(sbd / "train.txt") + read_split_ids(sbd / "val.txt")
        self.ids = [i for i in dict.fromkeys(listed) if i not in val]
        self.images, self.masks = [], []
        for sample in self.ids:
            voc_mask = self.root / "SegmentationClass" / f"{sample}.png"
            mask = voc_mask if voc_mask.is_file() else sbd / "cls" / f"{sample}.mat"
            image = self.root / "JPEGImages" / f"{sample}.jpg"
            if not image.is_file():
                image = sbd / "img" / f"{sample}.jpg"
            for path in (image, mask):
                if not path.is_file():
                    raise InputError(
                        f"image {sample!r} of split {AUG_SPLIT!r}: {str(path)!r} is missing"
                    )
            self.images.append(image)
            self.masks.append(mask)

    def load_label(self, index: int) -> Tensor:
        path = self.masks[index]
        return read_sbd_mask(path) if path.suffix == ".mat" else read_index_mask(path)


def check_disjoint(split: str, ids: list[str], val_list: Path) -> None:
    """A training split may not hold an image of the ``val`` list (when there is one): the
    trial evaluates on ``val``, which would then score images it trained on."""
    if not val_list.is_file():
        return
    shared = sorted(set(ids) & set(read_split_ids(val_list)))
    if shared:
        shown = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
        raise InputError(
            f"split {split!r} holds {len(shared)} image(s) of {str(val_list)!r} ({shown}); a "
            "training list must leave the evaluation images out"
        )


def read_sbd_mask(path: Path) -> Tensor:
    """SBD's ``cls/<id>.mat`` as an int64 ``(H, W)`` tensor of class ids (``GTcls.Segmentation``)."""
    from scipy.io import loadmat

    try:
        content = loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(content["GTcls"].Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise InputError(
            f"cannot read SBD mask {str(path)!r} (expected GTcls.Segmentation): {err}"
        ) from None
    if segmentation.ndim != 2:
        raise InputError(f"SBD mask {str(path)!r} is not a 2-D class map")
    return torch.from_numpy(segmentation.astype(np.int64))


def build_voc(request: DatasetRequest, train_split: str = "train") -> VOCSegmentation:
    """``voc``: PASCAL VOC 2012 (+ SBD with split ``train_aug``), 21 classes. Option
    ``train_split``: the list the ``train`` split reads (``train_aug`` for SBD)."""
    if not isinstance(train_split, str) or not train_split:
        raise InputError(
            f"voc option train_split={train_split!r} must be a split name such as 'train_aug'"
        )
    return VOCSegmentation(request, train_split)
