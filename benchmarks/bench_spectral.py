"""Cost of the CE spectrum against one segmentation forward pass on the same batch.

    python benchmarks/bench_spectral.py                       # 2 x 21 x 513 x 513 (paper size)
    python benchmarks/bench_spectral.py --size 129 --repeats 2   # quick

Times ``ce_spectrum`` on the logits of a torchvision DeepLab v3 ResNet-101 (random weights,
eval, no_grad) for each FFT precision, times that forward pass, and prints seconds (median of
``--repeats`` after one warm-up) and the spectrum / forward ratio against the target (5 %).
Labels are random with ~10 % ignored pixels.

Random weights give logits of ~1e3 in eval mode; they are standardised (then near-uniform,
CE ~ ln C). A trained network is confident: its CE is a small difference of large spectral
terms, and ``precision="auto"`` then runs float64 FFTs to keep the decomposition exact (1e-6).
``--margins`` adds M to the label's logit to time that case too (margin 0: the standardised
logits).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from trainables.spectral import PRECISIONS, ce_spectrum

TARGET_RATIO = 0.05


def median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=513, help="input height = width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--margins",
        type=float,
        nargs="+",
        default=[0.0, 10.0],
        help="confidence margins added to the label's logit (0: untrained logits)",
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        choices=("random", "regions"),
        default=["random", "regions"],
        help="random: every class in every image (the worst case: no label FFT skipped); "
        "regions: a few large regions of 3 classes per image, as in VOC or Cityscapes crops",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from torchvision.models.segmentation import deeplabv3_resnet101

    torch.manual_seed(0)
    model = deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=args.classes)
    model = model.eval().to(device)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        logits = model(images)["out"].float()
    # random weights in eval mode blow activations up (logits ~1e3); a trained network's logits
    # spread over a few units: standardise, then --margins makes them confident
    logits = (logits - logits.mean()) / logits.std()

    print(
        f"device {device}, threads {torch.get_num_threads()}, "
        f"logits {tuple(logits.shape)}, repeats {args.repeats}"
    )

    def forward() -> None:
        with torch.no_grad():
            model(images)

    forward_s = median_seconds(forward, args.repeats, device)
    print(f"DeepLab v3 ResNet-101 forward: {forward_s:.3f} s")
    for kind in args.labels:
        labels = make_labels(kind, args.batch, args.classes, args.size, device)
        for margin in args.margins:
            time_precisions(logits, labels, margin, kind, forward_s, args.repeats, device)


def make_labels(
    kind: str, batch: int, classes: int, size: int, device: torch.device
) -> torch.Tensor:
    """``random``: uniform classes per pixel; ``regions``: per image, a 4 x 4 grid of blocks
    drawn from background and two other classes; both with ~10 % ignored pixels."""
    generator = torch.Generator().manual_seed(1)
    if kind == "random":
        labels = torch.randint(0, classes, (batch, size, size), generator=generator)
    else:
        picks = [torch.tensor([0, *(torch.randperm(classes - 1, generator=generator)[:2] + 1)])
                 for _ in range(batch)]  # fmt: skip
        grid = torch.stack([p[torch.randint(0, 3, (4, 4), generator=generator)] for p in picks])
        labels = torch.nn.functional.interpolate(grid[:, None].float(), size=(size, size))
        labels = labels[:, 0].long()
    labels[torch.rand(labels.shape, generator=generator) < 0.1] = 255
    return labels.to(device)


def time_precisions(
    logits: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    kind: str,
    forward_s: float,
    repeats: int,
    device: torch.device,
) -> None:
    """One line per precision: seconds, share of the forward, Parseval error."""
    confident = with_margin(logits, labels, margin)
    ce = float(torch.nn.functional.cross_entropy(confident, labels, ignore_index=255))
    present = int((torch.bincount(labels[labels != 255].flatten()) > 0).sum())
    print(f"{kind} labels ({present} classes present), margin {margin:g} (CE {ce:.4f}):")
    for precision in PRECISIONS:
        spectrum = ce_spectrum(confident, labels, precision=precision)
        error = abs(float(spectrum.band_profile.sum()) - ce) / ce
        run = functools.partial(ce_spectrum, confident, labels, precision=precision)
        seconds = median_seconds(run, repeats, device)
        ratio = seconds / forward_s
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(
            f"  ce_spectrum precision={precision:6s} (ran {spectrum.precision}): "
            f"{seconds:.3f} s, {100 * ratio:.1f} % of the forward ({verdict} the "
            f"{100 * TARGET_RATIO:.0f} % target), Parseval error {error:.1e}"
        )


def with_margin(logits: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """``logits`` with ``margin`` added to the label's class at every labelled pixel."""
    if margin == 0:
        return logits
    valid = labels != 255
    boost = torch.zeros_like(logits)
    index = labels.masked_fill(~valid, 0).unsqueeze(1)
    boost.scatter_(1, index, (margin * valid).unsqueeze(1).to(logits.dtype))
    return logits + boost


if __name__ == "__main__":
    main()
