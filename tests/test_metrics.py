"""Segmentation metrics: confusion-matrix IoU, pixel accuracy, boundary IoU, streaming, errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import jaccard_score

from trainables.errors import InputError
from trainables.metrics import SegmentationMetrics, boundary_region, boundary_width_pixels

IGNORE = 255


def random_maps(
    batch: int, classes: int, size: int, seed: int, ignore: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blob-like targets and predictions that agree on most pixels, with ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    field = F.avg_pool2d(torch.randn(batch, classes, size, size, generator=g), 7, 1, 3)
    target = field.argmax(1)
    noise = torch.randn(batch, classes, size, size, generator=g) * 0.03
    pred = (field + noise).argmax(1)
    target[torch.rand(batch, size, size, generator=g) < ignore] = IGNORE
    return pred, target


def square(size: int, top: int, left: int, side: int) -> torch.Tensor:
    """A (size, size) map of class 1 on a square, class 0 elsewhere."""
    out = torch.zeros(size, size, dtype=torch.long)
    out[top : top + side, left : left + side] = 1
    return out


def assert_same(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Two ``compute()`` results agree in every value (nan where the other has nan)."""
    assert first.keys() == second.keys()
    for key in first:
        a = torch.tensor(first[key], dtype=torch.float64)
        b = torch.tensor(second[key], dtype=torch.float64)
        torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-12, atol=0.0)


def test_iou_matches_sklearn_jaccard() -> None:
    classes = 6
    pred, target = random_maps(3, classes, 40, seed=0)
    metrics = SegmentationMetrics(classes)
    metrics.update(pred, target)
    result = metrics.compute()
    valid = target != IGNORE
    expected = jaccard_score(
        target[valid].numpy(), pred[valid].numpy(), average=None, labels=list(range(classes))
    )
    assert result["per_class_iou"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert result["miou"] == pytest.approx(float(expected.mean()), abs=1e-12)
    correct = int((pred[valid] == target[valid]).sum())
    assert result["pixel_acc"] == pytest.approx(correct / int(valid.sum()))


def test_exact_small_case_leaves_absent_class_out() -> None:
    metrics = SegmentationMetrics(3)
    metrics.update(torch.tensor([[0, 1, 0, 1]]), torch.tensor([[0, 1, 0, 0]]))
    result = metrics.compute()
    assert result["miou"] == pytest.approx(0.583333, abs=1e-6)
    first, second, absent = result["per_class_iou"]
    assert first == pytest.approx(2 / 3)
    assert second == pytest.approx(1 / 2)
    assert math.isnan(absent)
    assert result["pixel_acc"] == pytest.approx(0.75)
    assert metrics.confusion_matrix.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_identical_maps_score_one() -> None:
    _, target = random_maps(2, 5, 48, seed=1)
    metrics = SegmentationMetrics(5)
    metrics.update(target.clone(), target)
    result = metrics.compute()
    assert result["miou"] == 1.0
    assert result["boundary_iou"] == 1.0
    assert result["pixel_acc"] == 1.0
    present = [c for c in range(5) if bool((target == c).any())]
    assert [result["per_class_boundary_iou"][c] for c in present] == [1.0] * len(present)


def test_predictions_at_ignored_pixels_do_not_count_in_iou() -> None:
    """mIoU and pixel accuracy ignore predictions at void pixels. (Boundary IoU may see them:
    they shape the predicted mask's boundary, as in the reference implementation.)"""
    pred, target = random_maps(2, 4, 32, seed=2, ignore=0.3)
    ignored = target == IGNORE
    scrambled = pred.clone()
    scrambled[ignored] = (pred[ignored] + 1) % 4
    first, second = SegmentationMetrics(4), SegmentationMetrics(4)
    first.update(pred, target)
    second.update(scrambled, target)
    a, b = first.compute(), second.compute()
    for key in ("miou", "per_class_iou", "pixel_acc"):
        assert_same({key: a[key]}, {key: b[key]})


# --- boundary IoU with void: against an independent implementation ---------------------------


def reference_boundary(mask: np.ndarray, ratio: float) -> np.ndarray:
    """boundary-iou-api's ``mask_to_boundary``, rewritten in numpy: pad the mask by one zero
    pixel, erode d times with a 3 x 3 square, crop, subtract."""
    h, w = mask.shape
    d = max(1, round(float(ratio * np.sqrt(h**2 + w**2))))
    padded = np.pad(mask.astype(np.uint8), 1)
    for _ in range(d):  # one 3 x 3 erosion (outside the padded image counts as foreground)
        grown = np.pad(padded, 1, constant_values=1)
        windows = [grown[i : i + h + 2, j : j + w + 2] for i in range(3) for j in range(3)]
        padded = np.minimum.reduce(windows)
    return mask.astype(np.uint8) - padded[1 : h + 1, 1 : w + 1]


def reference_boundary_iou(
    preds: list[np.ndarray], targets: list[np.ndarray], classes: int, ratio: float = 0.02
) -> float:
    """Per class: boundaries of the full masks, void pixels out of the counts, summed over
    images, then the mean over classes with a non-empty union."""
    inter, union = np.zeros(classes), np.zeros(classes)
    for pred, target in zip(preds, targets, strict=True):
        valid = target != IGNORE
        for c in range(classes):
            g = reference_boundary(target == c, ratio).astype(bool)
            p = reference_boundary(pred == c, ratio).astype(bool)
            inter[c] += (g & p & valid).sum()
            union[c] += ((g | p) & valid).sum()
    seen = union > 0
    return float((inter[seen] / union[seen]).mean())


def void_banded(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """VOC-like maps: blobs whose borders carry a void band 5 px wide in the target; the
    prediction is the un-banded truth slightly perturbed."""
    g = torch.Generator().manual_seed(seed)
    field = F.avg_pool2d(torch.randn(1, 3, size, size, generator=g), 15, 1, 7)
    truth = field.argmax(1)[0]
    edge = boundary_region(torch.stack([truth == c for c in range(3)]), 2).any(0)
    target = truth.masked_fill(edge, IGNORE)
    noise = torch.randn(1, 3, size, size, generator=g) * 0.02
    pred = (field + noise).argmax(1)[0]
    return pred, target


def test_boundary_iou_with_void_bands_matches_the_reference_implementation() -> None:
    maps = [void_banded(129, seed) for seed in range(3)]
    metrics = SegmentationMetrics(3)
    for pred, target in maps:
        metrics.update(pred, target)
    ours = metrics.compute()["boundary_iou"]
    expected = reference_boundary_iou([p.numpy() for p, _ in maps], [t.numpy() for _, t in maps], 3)
    assert ours == pytest.approx(expected, rel=1e-12)
    # cutting the prediction at void pixels first (the old way) makes every void edge a
    # boundary of both masks and inflates the score
    cut = [np.where(t.numpy() == IGNORE, IGNORE, p.numpy()) for p, t in maps]
    inflated = reference_boundary_iou(cut, [t.numpy() for _, t in maps], 3)
    assert inflated > ours + 0.02


def test_predicted_ignore_is_a_miss() -> None:
    metrics = SegmentationMetrics(2)
    metrics.update(torch.tensor([[0, IGNORE, 1]]), torch.tensor([[0, 1, 1]]))
    result = metrics.compute()
    assert result["per_class_iou"] == pytest.approx([1.0, 0.5])
    assert result["pixel_acc"] == pytest.approx(2 / 3)


def test_shifted_square_boundary_iou_below_miou() -> None:
    size = 64
    target = square(size, 16, 16, 30)
    pred = square(size, 19, 18, 30)
    metrics = SegmentationMetrics(2)
    metrics.update(pred, target)
    result = metrics.compute()
    assert 0.0 < result["boundary_iou"] < 1.0
    assert result["boundary_iou"] < result["miou"] < 1.0


def test_boundary_iou_of_shifted_squares_by_hand() -> None:
    """8 x 8, d = 1; ground truth rows 2-5 x cols 2-5, prediction one column to the right.

    Class 1: each inner ring holds 12 pixels, they share 6 (rows 2 and 5, cols 3-5): 6/18.
    Class 0: the image border is contour, so all 48 ground-truth pixels are boundary; the
    prediction's 48 lose rows 1-6 of col 1 (6 pixels, 8-neighbours all class 0): 42. They share
    the 44 pixels outside both squares less those 6: 38, union 48 + 42 - 38 = 52.
    """
    metrics = SegmentationMetrics(2)
    metrics.update(square(8, 2, 3, 4), square(8, 2, 2, 4))
    result = metrics.compute()
    assert result["per_class_boundary_iou"] == pytest.approx([38 / 52, 6 / 18])
    assert result["boundary_iou"] == pytest.approx((38 / 52 + 6 / 18) / 2)


def test_boundary_region_equals_max_pool_erosion() -> None:
    _, target = random_maps(1, 4, 37, seed=3, ignore=0.0)
    masks = target[0] == torch.arange(4).view(-1, 1, 1)
    for d in (1, 2, 5):
        complement = F.pad((~masks).float().unsqueeze(1), (d, d, d, d), value=1.0)
        eroded = F.max_pool2d(complement, 2 * d + 1, stride=1).squeeze(1) == 0
        assert torch.equal(boundary_region(masks, d), masks & ~eroded)


def test_boundary_region_of_a_square() -> None:
    mask = square(12, 3, 3, 6).bool().unsqueeze(0)
    edge = boundary_region(mask, 1)[0]
    assert int(edge.sum()) == 6 * 6 - 4 * 4  # a one-pixel ring
    assert not bool(edge[5:7, 5:7].any())
    full = torch.ones(1, 5, 5, dtype=torch.bool)
    assert int(boundary_region(full, 1).sum()) == 25 - 9  # the image border is contour


def test_boundary_width_pixels() -> None:
    assert boundary_width_pixels(513, 513, 0.02) == 15
    assert boundary_width_pixels(10, 10, 0.02) == 1
    assert boundary_width_pixels(10, 10, 0.0) == 1


def test_streaming_equals_one_update() -> None:
    pred, target = random_maps(4, 5, 33, seed=4)
    streamed, whole = SegmentationMetrics(5), SegmentationMetrics(5)
    streamed.update(pred[:1], target[:1])
    streamed.update(pred[1:3], target[1:3])
    streamed.update(pred[3], target[3])
    whole.update(pred, target)
    assert_same(streamed.compute(), whole.compute())
    assert torch.equal(streamed.confusion_matrix, whole.confusion_matrix)


def test_reset_forgets_everything() -> None:
    pred, target = random_maps(1, 3, 16, seed=5)
    metrics = SegmentationMetrics(3)
    metrics.update(pred, target)
    metrics.reset()
    result = metrics.compute()
    assert math.isnan(result["miou"])
    assert math.isnan(result["boundary_iou"])
    assert math.isnan(result["pixel_acc"])


def test_input_errors() -> None:
    metrics = SegmentationMetrics(3)
    with pytest.raises(InputError, match=r"\(2, 4\).*\(2, 5\)"):
        metrics.update(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(InputError, match="target value 3"):
        metrics.update(torch.zeros(1, 4, dtype=torch.long), torch.tensor([[0, 1, 3, 255]]))
    with pytest.raises(InputError, match="pred value -1"):
        metrics.update(torch.tensor([[0, -1, 0, 0]]), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(InputError, match="integer"):
        metrics.update(torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(InputError, match="num_classes 0"):
        SegmentationMetrics(0)
    with pytest.raises(InputError, match=r"-0\.1"):
        SegmentationMetrics(3, boundary_width=-0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    pred, target = random_maps(2, 5, 40, seed=6)
    cpu, gpu = SegmentationMetrics(5), SegmentationMetrics(5)
    cpu.update(pred, target)
    gpu.update(pred.cuda(), target.cuda())
    assert_same(gpu.compute(), cpu.compute())
