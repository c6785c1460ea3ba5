"""Custom data in a plain folder layout: ``images/`` and ``masks/`` with matching stems.

Layout under ``root``::

    images/<stem>.{jpg,jpeg,png}
    masks/<stem>.png        index or palette PNG: class ids, 255 = ignore
    splits/{split}.txt      optional: the stems of each split (else every image, any split);
                            splits/train.txt may not list a stem of splits/val.txt
    classes.txt             optional: one class name per line (sets the class count)

The class count is ``num_classes`` when given, else the length of ``classes.txt``, else the
largest mask value below 255 plus one (every mask is read once to find it).

What counts as an image: every entry of ``images/`` must be a file named ``*.jpg``, ``*.jpeg``
or ``*.png`` (any case) whose header PIL identifies as JPEG or PNG; hidden entries (names
starting with ``.``, e.g. ``.DS_Store``) are ignored. Anything else there (``notes.txt``, a
sub-directory, a ``.png`` that is not an image) is an error naming it, raised when the data set
is built, before anything reads its pixels; so is an image without its mask. Only headers are
checked then: a file whose pixels cannot be decoded fails, naming it, when it is read.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from trainables.data.base import DatasetRequest, PairedFileDataset, read_index_mask
from trainables.data.transforms import IGNORE_INDEX
from trainables.data.voc import check_disjoint, read_split_ids
from trainables.errors import InputError

__all__ = ["FolderSegmentation", "build_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: PIL formats accepted under those names (MPO: the multi-picture JPEG many cameras write).
IMAGE_FORMATS = ("JPEG", "MPO", "PNG")


def _list_images(image_dir: Path) -> dict[str, Path]:
    """Stem -> image file of every image in ``image_dir`` (see the module docstring's rule)."""
    if not image_dir.is_dir():
        raise InputError(f"image directory {str(image_dir)!r} does not exist")
    images: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.name.startswith("."):
            continue
        _check_image_file(path)
        if path.stem in images:
            raise InputError(f"image stem {path.stem!r} appears twice in {str(image_dir)!r}")
        images[path.stem] = path
    return images


def _check_image_file(path: Path) -> None:
    """A ``.jpg``/``.jpeg``/``.png`` file whose header is JPEG or PNG, or an InputError naming it."""
    expected = f"expected only image files ({', '.join(IMAGE_EXTENSIONS)}) in images/"
    if not path.is_file():
        raise InputError(f"{str(path)!r} is not a file; {expected}")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"{str(path)!r} is not an image file; {expected}")
    try:
        with Image.open(path) as image:  # reads the header only
            kind = image.format
    except (UnidentifiedImageError, OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or "not a JPEG or PNG image"
        raise InputError(f"image {str(path)!r} cannot be read ({reason}); {expected}") from None
    if kind not in IMAGE_FORMATS:
        raise InputError(f"image {str(path)!r} is a {kind} file; {expected} (JPEG or PNG)")


def _stems(root: Path, split: str, images: dict[str, Path]) -> list[str]:
    """The stems of ``split``: its list under ``splits/`` if that directory exists, else all."""
    split_dir = root / "splits"
    if not split_dir.is_dir():
        stems = sorted(images)
        if not stems:
            raise InputError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root / 'images')!r}"
            )
        return stems
    split_file = split_dir / f"{split}.txt"
    stems = read_split_ids(split_file)
    for stem in stems:
        if stem not in images:
            raise InputError(f"image {stem!r} of {str(split_file)!r} is missing in images/")
    if split == "train":  # what a trial trains on (trainval may hold val)
        check_disjoint(split, stems, split_dir / "val.txt")
    return stems


def _infer_classes(masks: list[Path]) -> int:
    """Largest mask value below 255, plus one."""
    largest = -1
    for path in masks:
        label = read_index_mask(path)
        valid = label[label != IGNORE_INDEX]
        if not valid.numel():
            continue
        value = int(valid.max())
        if value > IGNORE_INDEX:
            raise InputError(
                f"mask {str(path)!r} holds value {value}; expected class ids below "
                f"{IGNORE_INDEX} or the ignore index {IGNORE_INDEX}"
            )
        largest = max(largest, value)
    if largest < 0:
        raise InputError(f"cannot infer num_classes: no labelled pixel in {len(masks)} mask(s)")
    return largest + 1


class FolderSegmentation(PairedFileDataset):
    """Images and index masks from ``root/images`` and ``root/masks`` (see module docstring)."""

    def __init__(self, request: DatasetRequest) -> None:
        root = request.require_root()
        images = _list_images(root / "images")
        stems = _stems(root, request.split, images)
        mask_dir = root / "masks"
        for stem in stems:
            if not (mask_dir / f"{stem}.png").is_file():
                raise InputError(f"image {stem!r} has no mask {str(mask_dir / f'{stem}.png')!r}")
        self.images = [images[stem] for stem in stems]
        self.masks = [mask_dir / f"{stem}.png" for stem in stems]
        super().__init__(request, self._class_names(root, request.num_classes))

    def _class_names(self, root: Path, num_classes: int | None) -> list[str]:
        names_file = root / "classes.txt"
        names = names_file.read_text().split("\n") if names_file.is_file() else []
        names = [name.strip() for name in names if name.strip()]
        if num_classes is None:
            num_classes = len(names) or _infer_classes(self.masks)
        if not 1 <= num_classes <= IGNORE_INDEX:
            raise InputError(f"num_classes={num_classes} must be in [1, {IGNORE_INDEX}]")
        if names and len(names) != num_classes:
            raise InputError(
                f"{str(names_file)!r} names {len(names)} classes but num_classes={num_classes}"
            )
        return names or [f"class_{c}" for c in range(num_classes)]


def build_folder(request: DatasetRequest) -> FolderSegmentation:
    """``folder``: ``images/`` + ``masks/`` (+ ``splits/``, ``classes.txt``). No options."""
    return FolderSegmentation(request)
