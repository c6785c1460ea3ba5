"""Seconds per training step (and peak memory on CUDA) of trial configurations.

    python benchmarks/bench_trial.py                 # the tiny demo configurations on this CPU
    python benchmarks/bench_trial.py --paper         # ResNet-101, 513 x 513, batch 8 (use a GPU)

Each configuration builds the model and data exactly as ``run_trial`` does, then times
``--steps`` SGD steps after ``--warmup`` untimed ones and prints one line per configuration.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from trainables.config import TrialConfig
from trainables.data import blockwise_labels
from trainables.trial_setup import build_datasets, build_network, resolve_device, seed_everything

TINY: dict[str, Any] = {
    "backbone": "resnet18",
    "num_classes": 5,
    "input_size": 65,
    "batch_size": 8,
    "train_length": 16,
    "eval_length": 8,
}

CONFIGS: dict[str, dict[str, Any]] = {
    "deeplabv3plus native": {"model": "deeplabv3plus"},
    "deeplabv3plus lrg 9": {"model": "deeplabv3plus", "lrg": 9},
    "dan native": {"model": "dan"},
    "dan lrg 9": {"model": "dan", "lrg": 9},
    "deeplabv3plus blockwise nu 4": {"model": "deeplabv3plus", "annotation_nu_max": 4},
}

PAPER: dict[str, Any] = {
    "backbone": "resnet101",
    "num_classes": 21,
    "input_size": 513,
    "batch_size": 8,
    "train_length": 16,
    "eval_length": 8,
}


def time_steps(cfg: TrialConfig, steps: int, warmup: int) -> tuple[list[float], float]:
    """Per-step seconds of forward + backward + SGD step, and peak CUDA memory in GiB."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    train_set, _, num_classes = build_datasets(cfg)
    model = build_network(cfg, num_classes, device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=False)
    images, labels = next(iter(loader))
    images, labels = images.to(device), labels.to(device).long()
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        began = time.perf_counter()
        target = labels
        if cfg.uses_blockwise_labels:
            assert cfg.annotation_nu_max is not None
            target = blockwise_labels(labels, cfg.annotation_nu_max)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        with autocast:
            logits = model(images)
        loss = F.cross_entropy(logits.float(), target, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return times, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="ResNet-101 at 513 x 513, batch 8")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (trials use 1)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    base = PAPER if args.paper else TINY
    configs = (
        {"deeplabv3plus native": {"model": "deeplabv3plus"}, "dan native": {"model": "dan"}}
        if args.paper
        else CONFIGS
    )
    device = resolve_device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'})")
    for name, overrides in configs.items():
        cfg = TrialConfig(**base, **overrides, device=args.device, num_threads=args.threads)
        times, peak = time_steps(cfg, args.steps, args.warmup)
        line = (
            f"{name:32s} input {cfg.input_size} batch {cfg.batch_size}: "
            f"{statistics.median(times):.4f} s/step (min {min(times):.4f})"
        )
        if device.type == "cuda":
            line += f", peak memory {peak:.2f} GiB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
