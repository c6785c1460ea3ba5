"""Data sets in their published layouts (tiny trees in tmp_path), synthetic data, transforms."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_data import (
    SIZE,
    make_cityscapes,
    make_deepglobe,
    make_folder,
    make_voc,
    random_labels,
    save_index_png,
    save_rgb,
)
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from trainables.data import (
    IMAGENET_MEAN,
    EvalTransform,
    SegmentationDataset,
    TrainTransform,
    build_dataset,
    list_datasets,
)
from trainables.data.deepglobe import split_ids
from trainables.errors import InputError
from trainables.spectral import label_spectrum, paper_bands

H, W = SIZE


def check_sample(dataset: SegmentationDataset, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    image, label = dataset[0]
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert label.shape == (size, size) and label.dtype == torch.int64
    valid = label[label != 255]
    assert valid.numel() == 0 or int(valid.max()) < dataset.num_classes
    return image, label


# --------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_name() -> None:
    assert list_datasets() == [
        "synthetic-smooth",
        "synthetic-fine",
        "voc",
        "cityscapes",
        "deepglobe",
        "folder",
    ]
    with pytest.raises(InputError, match=r"'vocx'.*synthetic-smooth, synthetic-fine, voc"):
        build_dataset("vocx")


def test_class_counts_have_one_registry() -> None:
    """The torch-free registry the config checks holds the readers' own class counts."""
    from trainables.config import DATASET_NAMES, FIXED_NUM_CLASSES
    from trainables.data.cityscapes import CITYSCAPES_CLASSES
    from trainables.data.deepglobe import DEEPGLOBE_CLASSES
    from trainables.data.voc import VOC_CLASSES

    assert tuple(list_datasets()) == DATASET_NAMES
    assert {
        "voc": len(VOC_CLASSES),
        "cityscapes": len(CITYSCAPES_CLASSES),
        "deepglobe": len(DEEPGLOBE_CLASSES),
    } == FIXED_NUM_CLASSES


def test_unknown_option_and_bad_common_values() -> None:
    with pytest.raises(InputError, match=r"'lenght'.*length, image_size"):
        build_dataset("synthetic-smooth", lenght=4)
    with pytest.raises(InputError, match="input_size=0"):
        build_dataset("synthetic-smooth", input_size=0)
    with pytest.raises(InputError, match="length=0"):
        build_dataset("synthetic-smooth", length=0)
    with pytest.raises(InputError, match="num_classes=1"):
        build_dataset("synthetic-fine", num_classes=1)


@pytest.mark.parametrize("name", ["voc", "cityscapes", "deepglobe", "folder"])
def test_root_required(name: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"'{name}' needs a root.*None"):
        build_dataset(name)
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match=re.escape(str(missing))):
        build_dataset(name, missing)


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("name", ["synthetic-smooth", "synthetic-fine"])
def test_synthetic_shapes_lengths_and_determinism(name: str) -> None:
    train = build_dataset(name, input_size=33)
    val = build_dataset(name, split="val", input_size=33)
    assert (len(train), len(val), train.num_classes, train.ignore_index) == (64, 16, 5, 255)
    assert train.name == name and train.class_names == tuple(f"class_{c}" for c in range(5))
    assert isinstance(train.transform, TrainTransform) and isinstance(val.transform, EvalTransform)
    check_sample(val, 33)
    again = build_dataset(name, split="val", input_size=33)
    assert all(
        torch.equal(val[i][0], again[i][0]) and torch.equal(val[i][1], again[i][1])
        for i in range(3)
    )
    assert not torch.equal(val[0][1], val[1][1])
    other_split = build_dataset(name, split="test", input_size=33, augment=False)
    other_seed = build_dataset(name, split="val", input_size=33, seed=1)
    assert not torch.equal(val[0][1], other_split[0][1])
    assert not torch.equal(val[0][1], other_seed[0][1])
    assert set(torch.cat([val.label(i).flatten() for i in range(8)]).tolist()) == set(range(5))


def test_synthetic_options() -> None:
    small = build_dataset(
        "synthetic-smooth", split="val", input_size=40, image_size=32, num_classes=3, length=5
    )
    assert len(small) == 5 and small.num_classes == 3
    image, label = check_sample(small, 40)  # 32 px generated, centre-padded to 40
    assert (
        (label[:4] == 255).all() and (label[36:] == 255).all() and (label[4:36, 4:36] != 255).all()
    )
    assert torch.allclose(image[:, :4], torch.zeros(3, 4, 40), atol=1e-6)  # mean pad -> 0
    raw_image, raw_label = small.load(0)
    assert raw_image.shape == (3, 32, 32) and torch.equal(raw_label, label[4:36, 4:36])
    assert torch.equal(small.label(0), label)


def test_fine_has_more_label_energy_above_every_band_than_smooth() -> None:
    above = {}
    for name in ("synthetic-smooth", "synthetic-fine"):
        data = build_dataset(name, split="val", input_size=65, length=12)
        labels = torch.stack([data.label(i) for i in range(len(data))])
        above[name] = label_spectrum(labels, data.num_classes).energy_above
    smooth, fine = above["synthetic-smooth"], above["synthetic-fine"]
    bands = range(1, 32)  # band 32 is the last: nothing above it for either
    assert all(float(fine[k]) > 1.3 * float(smooth[k]) for k in bands), (fine, smooth)
    for nu in paper_bands(65).values():
        if nu < 32:
            assert float(fine[nu]) > float(smooth[nu])
    assert float(smooth[8]) < 0.1 < float(fine[8])  # smooth: most energy within an LRG of 17


def train_tiny_cnn(images: torch.Tensor, labels: torch.Tensor, classes: int) -> nn.Module:
    """Five epochs of Adam on a three-layer CNN, batches of 8, one CPU thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, classes, 1),
        )
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(5):
            for i in range(0, len(images), 8):
                loss = F.cross_entropy(net(images[i : i + 8]), labels[i : i + 8], ignore_index=255)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return net
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["synthetic-smooth", "synthetic-fine"])
def test_synthetic_data_is_learnable_by_a_tiny_cnn(name: str) -> None:
    torch.manual_seed(0)
    train = build_dataset(name, input_size=33, length=32, augment=False)
    val = build_dataset(name, split="val", input_size=33, length=8)
    images, labels = next(iter(DataLoader(train, batch_size=32)))
    net = train_tiny_cnn(images, labels, train.num_classes)
    val_images, val_labels = next(iter(DataLoader(val, batch_size=8)))
    with torch.no_grad():
        accuracy = (net(val_images).argmax(1) == val_labels).float().mean().item()
    majority = max((val_labels == c).float().mean().item() for c in range(5))
    assert accuracy > 0.7 and accuracy > majority + 0.3


# --------------------------------------------------------------------------- VOC


@pytest.mark.parametrize("nested", [True, False])
def test_voc_layout_and_palette_indices(tmp_path: Path, nested: bool) -> None:
    mask = random_labels([*range(21), 255], seed=11)
    make_voc(tmp_path, labels={"2007_000003": mask}, nested=nested)
    for root in (tmp_path, tmp_path / "VOCdevkit" / "VOC2012" if nested else tmp_path / "VOC2012"):
        train = build_dataset("voc", root, input_size=32)
        val = build_dataset("voc", root, "val", input_size=24)
        assert (len(train), len(val), val.num_classes) == (2, 1, 21)
        assert val.class_names[0] == "background" and val.class_names[-1] == "tvmonitor"
        check_sample(train, 32)
        image, label = check_sample(val, 24)
        # 20 x 24 centre-padded to 24 x 24: two ignore rows above and below the mask
        assert (label[:2] == 255).all() and (label[22:] == 255).all()
        assert torch.equal(label[2:22], torch.from_numpy(mask.astype(np.int64)))
        assert torch.allclose(image[:, :2], torch.zeros(3, 2, 24), atol=1e-6)  # mean pad -> 0


def test_voc_sbd_train_aug(tmp_path: Path) -> None:
    make_voc(tmp_path, aug=["2008_000001", "2008_000002", "2007_000001"])
    aug = build_dataset("voc", tmp_path, "train_aug", input_size=24)
    assert len(aug) == 3 and aug.augment
    assert all(Path(aug.source(i)).parent.name == "SegmentationClassAug" for i in range(3))
    assert Path(build_dataset("voc", tmp_path, "val").source(0)).parent.name == "SegmentationClass"
    check_sample(aug, 24)
    assert aug.validate() == 3


def _save_sbd_mat(path: Path, labels: np.ndarray) -> None:
    """An SBD ``cls/<id>.mat`` as the archive has it: a MATLAB struct ``GTcls`` whose field
    ``Segmentation`` is the class map (also ``Boundaries`` and ``CategoriesPresent``)."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    present = np.unique(labels[labels > 0]).astype(np.uint8)
    gtcls = {"Segmentation": labels.astype(np.uint8), "Boundaries": np.empty((0, 0)),
             "CategoriesPresent": present}  # fmt: skip
    savemat(path, {"GTcls": gtcls})


def make_sbd(base: Path, ids: dict[str, list[str]], labels: dict[str, np.ndarray]) -> Path:
    """SBD as ``benchmark.tgz`` unpacks under ``base``: ``benchmark_RELEASE/dataset/{img,cls}``
    and its ``train.txt`` / ``val.txt``."""
    dataset = base / "benchmark_RELEASE" / "dataset"
    for split, names in ids.items():
        (dataset / f"{split}.txt").parent.mkdir(parents=True, exist_ok=True)
        (dataset / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for seed, name in enumerate(names):
            save_rgb(dataset / "img" / f"{name}.jpg", random_image_like(seed))
            _save_sbd_mat(dataset / "cls" / f"{name}.mat", labels[name])
    return dataset


def random_image_like(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_voc_train_aug_from_sbd_as_published(tmp_path: Path) -> None:
    """``train_aug`` from SBD's own archive layout: VOC train + SBD train and val, less VOC
    val; VOC's mask where VOC has one, SBD's class map otherwise; images from VOC's
    JPEGImages when there, else SBD's ``img``. Each mask is one class value, so the id can be
    read back from the label."""
    value = {"2007_000001": 1, "2007_000002": 2, "2007_000003": 3, "2008_000010": 4,
             "2008_000011": 5, "2007_000004": 6}  # fmt: skip
    full = {name: np.full(SIZE, v, dtype=np.uint8) for name, v in value.items()}
    splits = {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"]}
    make_voc(tmp_path, splits, labels=full)
    sbd_labels = {**full, "2007_000002": np.full(SIZE, 9, dtype=np.uint8)}  # VOC's wins
    sbd_ids = {"train": ["2007_000002", "2008_000010"], "val": ["2008_000011", "2007_000003"]}
    make_sbd(tmp_path, sbd_ids, sbd_labels)
    aug = build_dataset("voc", tmp_path, "train_aug", input_size=24)
    expected = ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]  # no VOC val
    assert aug.ids == expected and aug.validate() == 4
    read = [int(aug.label(i)[12, 12]) for i in range(4)]
    assert read == [1, 2, 4, 5]
    sources = [Path(aug.source(i)) for i in range(4)]
    assert [p.suffix for p in sources] == [".png", ".png", ".mat", ".mat"]
    assert aug.images[2].parent.name == "img"  # not in VOC's JPEGImages
    # a trial asks for "train": option train_split picks the list, from VOCdevkit as root too
    trained = build_dataset("voc", tmp_path / "VOCdevkit", "train", train_split="train_aug")
    assert trained.ids == expected and trained.augment


def test_voc_training_lists_may_not_hold_val_images(tmp_path: Path) -> None:
    make_voc(tmp_path, aug=["2008_000001", "2007_000003"])  # 2007_000003 is in val.txt
    with pytest.raises(
        InputError, match=r"'train_aug' holds 1 image\(s\) of .*val\.txt.*2007_000003"
    ):
        build_dataset("voc", tmp_path, "train_aug")
    both = {
        "train": ["2007_000001"],
        "val": ["2007_000003"],
        "trainval": ["2007_000001", "2007_000003"],
    }
    assert len(build_dataset("voc", make_voc(tmp_path / "tv", both), "trainval")) == 2  # may
    plain = make_voc(tmp_path / "plain")  # neither train_aug.txt nor SBD
    with pytest.raises(InputError, match=r"needs .*train_aug\.txt.*benchmark_RELEASE"):
        build_dataset("voc", plain, "train", train_split="train_aug")


def test_split_list_names_keep_their_dots_and_spaces(tmp_path: Path) -> None:
    """A folder's split lists name stems; only an image file ending is stripped (before, the
    name was cut at its first dot or space: 'field.2019' read 'field.png')."""
    root = tmp_path / "tiles"
    names = ["field", "field.2019", "field.2020", "scan 01"]
    for seed, name in enumerate(names):
        save_rgb(root / "images" / f"{name}.png", random_image_like(seed))
        save_index_png(root / "masks" / f"{name}.png", np.full(SIZE, seed % 2, dtype=np.uint8),
                       palette=False)  # fmt: skip
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("field\nfield.2019.png\nscan 01\n")
    (root / "splits" / "val.txt").write_text("images/field.2020.png\n")
    train = build_dataset("folder", root, "train", num_classes=2)
    val = build_dataset("folder", root, "val", num_classes=2)
    assert [p.name for p in train.images] == ["field.png", "field.2019.png", "scan 01.png"]
    assert [p.name for p in val.images] == ["field.2020.png"]
    (root / "splits" / "val.txt").write_text("field.2019\n")
    with pytest.raises(InputError, match=r"'train' holds 1 image\(s\) of .*field\.2019"):
        build_dataset("folder", root, "train", num_classes=2)


def test_voc_bad_input(tmp_path: Path) -> None:
    root = make_voc(tmp_path, labels={"2007_000003": np.full(SIZE, 30, dtype=np.uint8)})
    voc = root / "VOCdevkit" / "VOC2012"
    with pytest.raises(
        InputError, match=re.escape(str(voc / "ImageSets" / "Segmentation" / "test.txt"))
    ):
        build_dataset("voc", root, "test")
    val = build_dataset("voc", root, "val")  # lazily checked
    with pytest.raises(InputError, match=r"2007_000003\.png has value 30"):
        val[0]
    with pytest.raises(InputError, match="value 30"):
        val.validate()
    assert build_dataset("voc", root, "train").validate() == 2
    with pytest.raises(InputError, match="num_classes=20"):
        build_dataset("voc", root, num_classes=20)
    (voc / "SegmentationClass" / "2007_000002.png").unlink()
    with pytest.raises(InputError, match="'2007_000002' has no mask"):
        build_dataset("voc", root, "train")
    with pytest.raises(InputError, match="VOCdevkit/VOC2012/JPEGImages"):
        build_dataset("voc", tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets")


# --------------------------------------------------------------------------- Cityscapes


def test_cityscapes_label_ids_to_train_ids(tmp_path: Path) -> None:
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[0:4] = 26  # car -> 13
    mask[4:8] = 7  # road -> 0
    mask[8:12] = 33  # bicycle -> 18
    mask[12:16] = 1  # ego vehicle -> ignore
    make_cityscapes(
        tmp_path, "val", ["aachen_000000_000019"], labels={"aachen_000000_000019": mask}
    )
    data = build_dataset("cityscapes", tmp_path, "val", input_size=24)
    assert len(data) == 1 and data.num_classes == 19 and data.class_names[13] == "car"
    _, label = check_sample(data, 24)
    rows = label[2:22, 0]  # centre-padded by 2 rows
    assert rows[0:4].tolist() == [13] * 4 and rows[4:8].tolist() == [0] * 4
    assert rows[8:12].tolist() == [18] * 4 and rows[12:20].tolist() == [255] * 8


def test_cityscapes_listing_and_bad_input(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, "train")
    data = build_dataset("cityscapes", tmp_path, input_size=16)
    assert len(data) == 3 and data.augment
    check_sample(data, 16)
    assert data.validate() == 3
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "leftImg8bit" / "val"))):
        build_dataset("cityscapes", tmp_path, "val")
    (tmp_path / "gtFine" / "train" / "bremen" / "bremen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(InputError, match="'bremen_000000_000019' has no mask"):
        build_dataset("cityscapes", tmp_path)


def test_cityscapes_test_split_is_refused(tmp_path: Path) -> None:
    """The published gtFine/test masks hold only void ids (unlabeled, ego vehicle, border, out
    of roi): every pixel would be ignored, so an evaluation there would mean nothing."""
    void = np.zeros(SIZE, dtype=np.uint8)
    void[:, : W // 2] = 1  # ego vehicle
    make_cityscapes(
        tmp_path, "test", ["berlin_000000_000019"], labels={"berlin_000000_000019": void}
    )
    with pytest.raises(InputError, match=r"'test' has no public labels.*use split 'val'"):
        build_dataset("cityscapes", tmp_path, "test")


def test_a_trial_cannot_set_the_split_through_data_set_options(tmp_path: Path) -> None:
    """``extra`` holds data-set options; the split is the trial's own (before: a TypeError
    about a keyword given twice)."""
    from trainables.config import TrialConfig
    from trainables.trial_setup import build_datasets

    root = make_voc(tmp_path)
    cfg = TrialConfig(dataset="voc", data_root=str(root), extra={"split": "train_aug"})
    with pytest.raises(InputError, match=r"option 'split' .*train_split"):
        build_datasets(cfg)
    train, _, classes = build_datasets(TrialConfig(dataset="voc", data_root=str(root)))
    assert len(train) == 2 and classes == 21


# --------------------------------------------------------------------------- DeepGlobe


def test_deepglobe_split_of_the_published_803() -> None:
    ids = [f"{i:06d}" for i in range(803)]
    train, val = split_ids(ids, "train"), split_ids(ids, "val")
    assert (len(train), len(val)) == (701, 102)
    assert sorted(train + val) == ids
    assert split_ids(list(reversed(ids)), "val") == val  # order on disk does not matter
    assert val != ids[-102:]  # a permutation, not the last ids


def test_deepglobe_decoding_and_split(tmp_path: Path) -> None:
    classes = np.arange(7, dtype=np.uint8).repeat(4)[None, :24].repeat(20, 0)  # stripes 0..5
    make_deepglobe(tmp_path, count=10, labels={"7": classes})
    train = build_dataset("deepglobe", tmp_path, input_size=24, augment=False)
    val = build_dataset("deepglobe", tmp_path, "val", input_size=24)
    assert (len(train), len(val), train.num_classes) == (9, 1, 7)  # round(10 * 102 / 803) = 1
    assert train.class_names[6] == "unknown"
    assert not set(train.ids) & set(val.ids)  # type: ignore[attr-defined]
    again = build_dataset("deepglobe", tmp_path / "train", "val")  # root may be train/ itself
    assert again.ids == val.ids  # type: ignore[attr-defined]
    data = train if "7" in train.ids else val  # type: ignore[attr-defined]
    index = data.ids.index("7")  # type: ignore[attr-defined]
    label = data.label(index)
    # noisy colours thresholded at 128 decode exactly to the written classes
    assert torch.equal(label[2:22], torch.from_numpy(classes.astype(np.int64)))
    check_sample(val, 24)


def test_deepglobe_red_is_ignored_and_bad_input(tmp_path: Path) -> None:
    make_deepglobe(tmp_path, count=3)
    red = np.zeros((*SIZE, 3), dtype=np.uint8)
    red[..., 0] = 250
    red[:, :4] = (0, 0, 255)  # water
    save_rgb(tmp_path / "train" / "7_mask.png", red)
    split = "train" if "7" in split_ids(["7", "107", "207"], "train") else "val"
    data = build_dataset("deepglobe", tmp_path, split, input_size=24, augment=False)
    label = data.label(data.ids.index("7"))[2:22]  # type: ignore[attr-defined]
    assert (label[:, :4] == 4).all() and (label[:, 4:] == 255).all()
    with pytest.raises(InputError, match=r"'test'.*train, val"):
        build_dataset("deepglobe", tmp_path, "test")
    (tmp_path / "train" / "107_mask.png").unlink()
    with pytest.raises(InputError, match="'107' has no mask"):
        build_dataset("deepglobe", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=re.escape(str(empty))):
        build_dataset("deepglobe", empty)


# --------------------------------------------------------------------------- folder


def test_folder_infers_classes_from_palette_masks(tmp_path: Path) -> None:
    make_folder(tmp_path, num_values=4)
    data = build_dataset("folder", tmp_path, "val", input_size=24)
    assert len(data) == 3 and data.num_classes == 4 and data.name == "folder"
    assert data.class_names == ("class_0", "class_1", "class_2", "class_3")
    check_sample(data, 24)
    assert data.validate() == 3


def test_folder_splits_classes_file_and_grey_masks(tmp_path: Path) -> None:
    make_folder(
        tmp_path,
        palette=False,
        splits={"train": ["img_a", "img_c"], "val": ["img_b"]},
        classes=["sky", "road", "car", "tree", "person"],
    )
    train = build_dataset("folder", tmp_path, input_size=24)
    val = build_dataset("folder", tmp_path, "val", input_size=24)
    assert (len(train), len(val), train.num_classes) == (2, 1, 5)
    assert train.class_names[2] == "car"
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "splits" / "test.txt"))):
        build_dataset("folder", tmp_path, "test")
    with pytest.raises(InputError, match="names 5 classes but num_classes=3"):
        build_dataset("folder", tmp_path, num_classes=3)


def test_folder_bad_input(tmp_path: Path) -> None:
    make_folder(tmp_path, num_values=4)
    data = build_dataset("folder", tmp_path, num_classes=2)
    with pytest.raises(InputError, match=r"img_a\.png has value [23]"):
        data[0]
    save_rgb(tmp_path / "masks" / "img_b.png", np.zeros((*SIZE, 3), dtype=np.uint8))
    with pytest.raises(InputError, match=r"img_b\.png.*mode 'RGB'"):
        build_dataset("folder", tmp_path)  # inference reads every mask
    (tmp_path / "masks" / "img_b.png").unlink()
    with pytest.raises(InputError, match="'img_b' has no mask"):
        build_dataset("folder", tmp_path)
    ignore_only = tmp_path / "blank"
    make_folder(ignore_only, ["x"], labels={"x": np.full(SIZE, 255, dtype=np.uint8)})
    with pytest.raises(InputError, match="no labelled pixel"):
        build_dataset("folder", ignore_only)
    wide = tmp_path / "wide"
    make_folder(wide, ["z"])
    sixteen = np.zeros(SIZE, dtype=np.uint16)
    sixteen[0, 0] = 300
    Image.fromarray(sixteen).save(wide / "masks" / "z.png")
    with pytest.raises(InputError, match=r"z\.png' holds value 300"):
        build_dataset("folder", wide)  # inferring the class count names the file and value
    shifted = tmp_path / "shifted"
    make_folder(shifted, ["y"])
    save_index_png(shifted / "masks" / "y.png", np.zeros((H + 1, W), dtype=np.uint8), palette=True)
    with pytest.raises(InputError, match=r"y\.png is 24x21 but its image is 24x20"):
        build_dataset("folder", shifted, num_classes=3)[0]


# --------------------------------------------------------------------------- transforms


def coded_pair(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose red channel encodes the label (to check joint geometry)."""
    gen = torch.Generator().manual_seed(height * width)
    label = torch.randint(0, 9, (height, width), generator=gen)
    image = torch.stack(
        [label.float() / 255, torch.rand(height, width, generator=gen), torch.zeros(height, width)]
    )
    return image, label


def test_train_transform_is_deterministic_under_the_global_seed() -> None:
    image, label = coded_pair(40, 30)
    transform = TrainTransform(32)
    torch.manual_seed(5)
    first = [transform(image, label) for _ in range(4)]
    torch.manual_seed(5)
    second = [transform(image, label) for _ in range(4)]
    for (a_img, a_lab), (b_img, b_lab) in zip(first, second, strict=True):
        assert a_img.shape == (3, 32, 32) and a_lab.shape == (32, 32) and a_lab.dtype == torch.long
        assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert not all(torch.equal(first[0][1], other[1]) for other in first[1:])


def test_train_crop_and_flip_move_image_and_label_together() -> None:
    image, label = coded_pair(40, 30)
    transform = TrainTransform(24, scale_range=(1.0, 1.0))
    torch.manual_seed(0)
    flips = 0
    for _ in range(8):
        out_image, out_label = transform(image, label)
        assert torch.equal((out_image[0] * 255).round().long(), out_label)
        crops = (label[t : t + 24, x : x + 24] for t in range(17) for x in range(7))
        flips += int(not any(torch.equal(out_label, crop) for crop in crops))
    assert 0 < flips < 8


def test_train_padding_is_ignore_and_mean() -> None:
    image, label = coded_pair(20, 24)
    out_image, out_label = TrainTransform(32, scale_range=(0.5, 0.5), flip=False)(image, label)
    assert out_label.shape == (32, 32)
    assert (out_label[10:] == 255).all() and (out_label[:, 12:] == 255).all()  # 10 x 12 content
    assert (out_label[:10, :12] != 255).all()
    mean = torch.tensor(IMAGENET_MEAN)[:, None]
    assert torch.allclose(out_image[:, 10:].reshape(3, -1), mean.expand(3, 22 * 32))


def test_eval_transform_centre_crops_and_pads() -> None:
    image, label = coded_pair(40, 30)
    out_image, out_label = EvalTransform(24)(image, label)
    assert torch.equal(out_label, label[8:32, 3:27]) and torch.equal(
        out_image, image[:, 8:32, 3:27]
    )
    _, padded = EvalTransform(44)(image, label)
    assert (
        torch.equal(padded[2:42, 7:37], label) and int((padded == 255).sum()) == 44 * 44 - 40 * 30
    )
    assert torch.equal(EvalTransform(44).label(label), padded)


def test_data_loader_batches(tmp_path: Path) -> None:
    make_voc(tmp_path)
    torch.manual_seed(0)
    loader = DataLoader(build_dataset("voc", tmp_path, input_size=33), batch_size=2)
    images, labels = next(iter(loader))
    assert images.shape == (2, 3, 33, 33) and labels.shape == (2, 33, 33)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
