"""Tiny data-set trees in the published on-disk layouts, built under a test's ``tmp_path``.

Each ``make_*`` writes a few small images (default 20 x 24, H x W) with seeded content and
returns the root to pass to ``build_dataset``. Masks are PNG (palette for VOC, label ids for
Cityscapes, RGB colour codes for DeepGlobe), images JPEG or PNG as published. ``labels`` maps a
sample id to the exact mask array to write, so tests can check the mapping pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SIZE = (20, 24)  # (H, W): not square, not a multiple of common grid sizes

#: DeepGlobe colour of each class 0..6 (urban, agriculture, rangeland, forest, water, barren,
#: unknown).
DEEPGLOBE_COLOURS = np.array(
    [
        [0, 255, 255],
        [255, 255, 0],
        [255, 0, 255],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 255],
        [0, 0, 0],
    ],
    dtype=np.uint8,
)


def random_labels(values: Sequence[int], size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """A ``size`` uint8 map of ``values`` drawn in 4 x 4 blocks (seeded)."""
    rng = np.random.default_rng(seed)
    height, width = size
    blocks = rng.choice(np.asarray(values, dtype=np.uint8), size=(-(-height // 4), -(-width // 4)))
    return np.kron(blocks, np.ones((4, 4), dtype=np.uint8))[:height, :width]


def random_image(size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 noise image (seeded)."""
    return np.random.default_rng(seed + 1000).integers(0, 256, (*size, 3), dtype=np.uint8)


def save_rgb(path: Path, array: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as RGB (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def save_index_png(path: Path, labels: np.ndarray, *, palette: bool) -> Path:
    """Write class indices as a palette ('P') or grey-level ('L') PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))  # mode 'L'
    if palette:  # attaching a palette turns 'L' into 'P' and keeps the values as indices
        colours = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)
        image.putpalette(colours.flatten().tolist())
    image.save(path)
    return path


def _labels_for(
    sample: str, labels: Mapping[str, np.ndarray] | None, values: Sequence[int], seed: int
) -> np.ndarray:
    if labels and sample in labels:
        return labels[sample]
    return random_labels(values, seed=seed)


def make_voc(
    root: Path,
    splits: Mapping[str, Iterable[str]] | None = None,
    *,
    labels: Mapping[str, np.ndarray] | None = None,
    aug: Iterable[str] = (),
    nested: bool = True,
) -> Path:
    """PASCAL VOC 2012 under ``root`` (``root/VOCdevkit/VOC2012`` when ``nested``).

    ``splits``: split name -> ids (default train a, b; val c). ``aug``: ids for the SBD
    ``train_aug`` list (pair format) with masks in ``SegmentationClassAug``. Returns ``root``.
    """
    voc = root / "VOCdevkit" / "VOC2012" if nested else root / "VOC2012"
    splits = splits or {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"]}
    values = [*range(21), 255]
    everything = sorted({s for ids in splits.values() for s in ids} | set(aug))
    for seed, sample in enumerate(everything):
        save_rgb(voc / "JPEGImages" / f"{sample}.jpg", random_image(seed=seed))
        mask = _labels_for(sample, labels, values, seed)
        if any(sample in ids for ids in splits.values()):
            save_index_png(voc / "SegmentationClass" / f"{sample}.png", mask, palette=True)
        if sample in set(aug):
            save_index_png(voc / "SegmentationClassAug" / f"{sample}.png", mask, palette=False)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    if aug:
        pairs = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png\n" for s in aug]
        (lists / "train_aug.txt").write_text("".join(pairs))
    return root


def make_cityscapes(
    root: Path,
    split: str = "train",
    samples: Sequence[str] = (
        "aachen_000000_000019",
        "aachen_000001_000019",
        "bremen_000000_000019",
    ),
    *,
    labels: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Cityscapes ``leftImg8bit`` / ``gtFine`` (labelIds) for ``samples`` of one split."""
    values = [0, 1, 7, 8, 11, 21, 23, 24, 26, 33]
    for seed, sample in enumerate(samples):
        city = sample.split("_")[0]
        save_rgb(
            root / "leftImg8bit" / split / city / f"{sample}_leftImg8bit.png",
            random_image(seed=seed),
        )
        mask = _labels_for(sample, labels, values, seed)
        path = root / "gtFine" / split / city / f"{sample}_gtFine_labelIds.png"
        save_index_png(path, mask, palette=False)
    return root


def make_deepglobe(
    root: Path,
    count: int = 10,
    *,
    labels: Mapping[str, np.ndarray] | None = None,
    noisy: bool = True,
) -> Path:
    """DeepGlobe land cover ``root/train/<id>_sat.jpg`` + ``<id>_mask.png`` (RGB codes).

    ``noisy``: colour values are perturbed by up to +-60 (as the published masks' are off 0/255),
    which thresholding at 128 must undo. Ids are ``"{100 * i + 7}"``.
    """
    rng = np.random.default_rng(3)
    for i in range(count):
        sample = str(100 * i + 7)
        save_rgb(root / "train" / f"{sample}_sat.jpg", random_image(seed=i))
        classes = _labels_for(sample, labels, list(range(7)), i)
        rgb = DEEPGLOBE_COLOURS[classes].astype(np.int64)
        if noisy:
            rgb = rgb + np.where(rgb > 127, -1, 1) * rng.integers(0, 61, rgb.shape)
        save_rgb(root / "train" / f"{sample}_mask.png", rgb.astype(np.uint8))
    return root


def make_folder(
    root: Path,
    stems: Sequence[str] = ("img_a", "img_b", "img_c"),
    *,
    num_values: int = 4,
    labels: Mapping[str, np.ndarray] | None = None,
    palette: bool = True,
    splits: Mapping[str, Sequence[str]] | None = None,
    classes: Sequence[str] | None = None,
) -> Path:
    """``root/images/<stem>.png`` + ``root/masks/<stem>.png`` (+ ``splits/``, ``classes.txt``)."""
    values = [*range(num_values), 255]
    for seed, stem in enumerate(stems):
        suffix = ".jpg" if seed % 2 else ".png"
        save_rgb(root / "images" / f"{stem}{suffix}", random_image(seed=seed))
        save_index_png(
            root / "masks" / f"{stem}.png", _labels_for(stem, labels, values, seed), palette=palette
        )
    for split, ids in (splits or {}).items():
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    if classes is not None:
        (root / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    return root


def spectrum_frame(bands: int = 9, base: float = 0.5) -> pd.DataFrame:
    """A spectrum table in ``SpectrumAccumulator.to_frame()``'s columns, as a trial writes it:
    a profile decaying as ``base ** k`` over ``bands`` bands."""
    k = list(range(bands))
    profile = [base**i for i in k]
    total = sum(profile)
    r_ce = [abs(1 - sum(profile[: i + 1]) / total) for i in k]
    label = [1.0 / (1 + i) for i in k]
    pred = [1.0 / (1 + i) ** 2 for i in k]
    return pd.DataFrame(
        {
            "k": k,
            "band_profile": profile,
            "r_ce": r_ce,
            "label_magnitude": label,
            "pred_magnitude": pred,
            "label_magnitude_norm": [v / max(label) for v in label],
            "pred_magnitude_norm": [v / max(pred) for v in pred],
        }
    )
