"""GPU figures of the paper-size trial: the project's step against a bare torch loop, the CE
spectrum's cost, and two small trials sharing one GPU.

    python3 benchmarks/bench_gpu.py --out "$OUT"              # CUDA machine: ~2-3 minutes
    python3 benchmarks/bench_gpu.py --smoke --device cpu      # tiny check, anywhere (1-2 minutes)
    python3 benchmarks/bench_gpu.py --only step spectrum      # a subset of the sections

``spectral-sweep train`` counts FLOPs with fvcore; where fvcore is missing (and no network), carry
its wheels in ``.whl/`` and start with::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD

Sections (a failing one prints its error and the others still run; figures are printed as they
come and written to ``OUT/bench_gpu.json`` after every section):

``step``
    For each model (DeepLab v3+, DAN) at ResNet-101, 513 x 513, batch 8, 21 classes, synthetic
    data, random weights: the project's training step (``trainables.trial.train_one_epoch``, timed
    per batch) fed by the trial's own loader (``make_loader``: data loading included), by batches
    already in memory (compute only), and by a loader with workers and pinned memory; then a bare
    torch loop of the same network (``build_network``) on one batch resident on the device (SGD
    momentum, bf16 autocast, channels_last, CE ignore 255), with ``cudnn.benchmark`` as the trial
    sets it and flipped. Median step seconds, images/s, the data-loading share, peak memory and
    the project / bare ratio (goal <= 1.1).
``spectrum``
    ``SpectrumAccumulator.update`` (what the trial runs, precision ``auto``) and ``ce_spectrum``
    forced to single and double precision on 8 x 21 x 513 x 513 logits (standardised untrained
    logits, and confident ones: margin 10 on the label's class) against the DeepLab v3+ eval
    forward pass on the same batch (bf16 autocast, as the trial evaluates); the Parseval error is
    ``band_profile.sum()`` against a float64 ``F.cross_entropy``.
``shared``
    Two small ``spectral-sweep train`` trials (ResNet-18, 129 x 129, 2 epochs) as subprocesses
    (``python3 -m orchestrator.cli train ... --json``), each alone and then both at once on the
    same device, as two ``--gpus-per-trial 0.5`` trials would share a GPU under Ray
    (``OMP_NUM_THREADS=1`` unless set, as Ray gives a one-CPU trial). Ray itself is not used.

``--budget`` (seconds, default 240) only decides whether the optional runs (the worker loader,
the flipped ``cudnn.benchmark``) still fit before the last section; ``--only`` picks sections.

``--smoke`` shrinks everything (ResNet-18, input 65, batch 2, 2 steps, one repeat).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import inspect
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from anywhere, the project not installed
    sys.path.insert(0, str(ROOT))

import trainables.trial as trial_module  # noqa: E402
import trainables.trial_setup as setup_module  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.spectral import SpectrumAccumulator, ce_spectrum  # noqa: E402
from trainables.trial import train_one_epoch  # noqa: E402
from trainables.trial_setup import (  # noqa: E402
    autocast,
    build_datasets,
    build_network,
    build_optimizer,
    make_loader,
    resolve_device,
    seed_everything,
    to_device,
)

Batch = tuple[torch.Tensor, torch.Tensor]
#: The issue's goal for the project's step time against the bare loop.
RATIO_GOAL = 1.1
#: Seconds the ``shared`` section needs; earlier sections skip their optional runs to leave it.
SHARED_RESERVE = 75.0
SECTIONS = ("step", "spectrum", "shared")


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    backbone: str
    input_size: int
    batch: int
    num_classes: int
    steps: int
    warmup: int
    repeats: int  # timed repeats of the forward pass and of each spectrum
    models: tuple[str, ...]
    shared_size: int
    shared_batch: int
    shared_train_length: int
    shared_eval_length: int
    shared_epochs: int


PAPER = Plan("resnet101", 513, 8, 21, 10, 3, 5, ("deeplabv3plus", "dan"), 129, 8, 64, 16, 2)
SMOKE = Plan("resnet18", 65, 2, 21, 2, 1, 1, ("deeplabv3plus", "dan"), 65, 2, 4, 2, 1)


# --------------------------------------------------------------------------- small helpers


def say(text: str = "") -> None:
    print(text, flush=True)


class Deadline:
    """Seconds left of the run's budget."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        began = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """``columns``: (heading, key, format spec); missing values print as ``-``."""
    cells = [[heading for heading, _, _ in columns]]
    cells += [[fmt(row.get(key), spec) for _, key, spec in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        first = line[0].ljust(widths[0])
        say(
            "  "
            + "  ".join([first] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)])
        )
        if n == 0:
            say("  " + "  ".join("-" * w for w in widths))


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class Report:
    """Figures gathered so far, saved as JSON after every section."""

    def __init__(self, out: Path) -> None:
        self.path = out / "bench_gpu.json"
        self.data: dict[str, Any] = {"errors": []}

    def save(self) -> None:
        self.path.write_text(json.dumps(json_safe(self.data), indent=2, sort_keys=True) + "\n")

    def section(self, name: str, fn: Callable[[], Any]) -> None:
        """Run one section; its failure is printed and recorded, never raised."""
        say(f"\n== {name}")
        began = time.perf_counter()
        try:
            self.data[name] = result = fn()
            if isinstance(result, dict):
                self.data["errors"] += [f"{name} {e}" for e in result.get("errors", [])]
        except Exception as err:
            self.error(name, err)
        finally:
            say(f"   ({name}: {time.perf_counter() - began:.1f} s)")
            self.save()

    def error(self, where: str, err: BaseException) -> None:
        line = (
            f"{where} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
        say(f"!! {line}")
        print(traceback.format_exc(limit=-3), file=sys.stderr, flush=True)
        self.data["errors"].append(line)


# --------------------------------------------------------------------------- what the trial does


def trial_sets_cudnn_benchmark() -> bool:
    """Whether the trial's code turns ``cudnn.benchmark`` on (a scan of its source)."""
    pattern = re.compile(r"cudnn\.benchmark\s*=\s*True")
    return any(pattern.search(inspect.getsource(m)) for m in (trial_module, setup_module))


def environment(device: torch.device, plan: Plan, cudnn_benchmark: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpus": os.cpu_count(),
        "plan": asdict(plan),
        "trial_sets_cudnn_benchmark": cudnn_benchmark,
        "fvcore_importable": importlib.util.find_spec("fvcore") is not None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def paper_config(plan: Plan, model: str, device_name: str) -> TrialConfig:
    """The trial config the step and spectrum sections run: one epoch of warmup + steps batches."""
    return TrialConfig(
        model=model,
        backbone=plan.backbone,
        dataset="synthetic-smooth",
        num_classes=plan.num_classes,
        input_size=plan.input_size,
        batch_size=plan.batch,
        train_length=plan.batch * (plan.warmup + plan.steps),
        eval_length=plan.batch,
        device=device_name,  # type: ignore[arg-type]  # checked by TrialConfig
        pretrained="false",
    )


# --------------------------------------------------------------------------- step: project vs bare


class TimedBatches:
    """Yields ``batches`` and records, per batch, the seconds spent fetching it and the seconds
    from asking for it until the next request (fetch + the training step that used it). The
    trial's step ends with ``loss.item()``, which waits for the GPU; a sync here makes sure."""

    def __init__(self, batches: Iterable[Batch], device: torch.device, keep: bool = False) -> None:
        self.batches, self.device, self.keep = batches, device, keep
        self.fetch: list[float] = []
        self.total: list[float] = []
        self.kept: list[Batch] = []

    def __iter__(self) -> Iterator[Batch]:
        self.fetch, self.total = [], []
        source = iter(self.batches)
        sync(self.device)
        asked = time.perf_counter()
        while True:
            try:
                batch = next(source)
            except StopIteration:
                return
            got = time.perf_counter()
            if self.keep:
                self.kept.append(batch)
            yield batch
            sync(self.device)
            now = time.perf_counter()
            self.fetch.append(got - asked)
            self.total.append(now - asked)
            asked = now

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def step_stats(total: list[float], batch: int, fetch: list[float] | None = None) -> dict[str, Any]:
    """Median / min / mean step seconds, images/s and (given ``fetch``) the data-loading share."""
    median = statistics.median(total)
    row: dict[str, Any] = {
        "steps": len(total),
        "median_s": median,
        "min_s": min(total),
        "mean_s": statistics.fmean(total),
        "images_per_s": batch / median,
    }
    if fetch is not None:
        row["fetch_median_s"] = statistics.median(fetch)
        row["data_share"] = sum(fetch) / sum(total)
    return row


def project_step(
    cfg: TrialConfig,
    model: nn.Module,
    optim: tuple[torch.optim.Optimizer, Any],
    batches: Iterable[Batch],
    device: torch.device,
    epoch: int,
    warmup: int,
) -> dict[str, Any]:
    """The trial's ``train_one_epoch`` over ``batches``, timed per step (``warmup`` left out)."""
    timed = batches if isinstance(batches, TimedBatches) else TimedBatches(batches, device)
    reset_peak(device)
    loss = train_one_epoch(model, timed, optim[0], optim[1], cfg, device, epoch)
    w = min(warmup, len(timed.total) - 1)
    row = step_stats(timed.total[w:], cfg.batch_size, timed.fetch[w:])
    row.update(peak_gib=peak_gib(device), loss=loss)
    return row


def worker_loader(dataset: Any, cfg: TrialConfig, device: torch.device) -> Any:
    """The trial's loader with worker processes and pinned memory (what a GPU trial could use)."""
    workers = max(1, min(12, (os.cpu_count() or 2) - 2))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def bare_loop(
    cfg: TrialConfig, num_classes: int, batch: Batch, device: torch.device, plan: Plan
) -> dict[str, Any]:
    """A plain training loop of the same network on one batch held on the device."""
    seed_everything(cfg.seed)
    model = build_network(cfg, num_classes, device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    images = batch[0].to(device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = batch[1].to(device).long()
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    reset_peak(device)
    for i in range(plan.warmup + plan.steps):
        sync(device)
        began = time.perf_counter()
        with amp:
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if i >= plan.warmup:
            times.append(time.perf_counter() - began)
    row = step_stats(times, cfg.batch_size)
    row.update(peak_gib=peak_gib(device), loss=loss.item())
    del model, optimizer
    free(device)
    return row


def guarded(out: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None with its error printed and listed in ``out["errors"]``."""
    try:
        return fn()
    except Exception as err:
        line = f"{name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        say(f"!! {line}")
        print(traceback.format_exc(limit=-3), file=sys.stderr, flush=True)
        out.setdefault("errors", []).append(line)
        return None


def project_rows(
    cfg: TrialConfig,
    num_classes: int,
    train_set: Any,
    loader: Any,
    device: torch.device,
    plan: Plan,
    deadline: Deadline,
    out: dict[str, Any],
) -> list[Batch]:
    """The trial's step fed three ways, into ``out["rows"]``; returns the batches it trained on."""
    rows, w = out["rows"], plan.warmup
    seed_everything(cfg.seed)
    model = build_network(cfg, num_classes, device)
    optim = build_optimizer(model, cfg, 4 * len(loader))
    kept = TimedBatches(loader, device, keep=True)
    name = "project, trial loader"
    rows[name] = guarded(out, name, lambda: project_step(cfg, model, optim, kept, device, 0, w))
    batches = kept.kept or [next(iter(loader))]
    name = "project, batches in memory"
    rows[name] = guarded(out, name, lambda: project_step(cfg, model, optim, batches, device, 1, w))
    if deadline.left() > SHARED_RESERVE + 60:
        feed = worker_loader(train_set, cfg, device)
        name = f"project, {feed.num_workers} workers + pin_memory={feed.pin_memory}"
        rows[name] = guarded(out, name, lambda: project_step(cfg, model, optim, feed, device, 2, w))
    return batches


def step_figures(
    model_name: str, plan: Plan, device: torch.device, device_name: str, deadline: Deadline
) -> dict[str, Any]:
    """Project step (three feeds) and bare loop (two cudnn settings) of one model."""
    cfg = paper_config(plan, model_name, device_name)
    seed_everything(cfg.seed)
    train_set, _, num_classes = build_datasets(cfg)
    loader = make_loader(train_set, cfg, train=True, device=device)  # the trial's own loader
    out: dict[str, Any] = {
        "config": cfg.to_dict(),
        "trial_loader": {"num_workers": loader.num_workers, "pin_memory": loader.pin_memory},
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "rows": {},
        "errors": [],
    }
    rows: dict[str, dict[str, Any] | None] = out["rows"]
    batch = project_rows(cfg, num_classes, train_set, loader, device, plan, deadline, out)[0]
    free(device)
    rows["bare"] = guarded(out, "bare", lambda: bare_loop(cfg, num_classes, batch, device, plan))
    if device.type == "cuda" and deadline.left() > SHARED_RESERVE + 45:
        flipped = not torch.backends.cudnn.benchmark
        name = f"bare, cudnn.benchmark={flipped}"
        torch.backends.cudnn.benchmark = flipped
        try:
            rows[name] = guarded(
                out, name, lambda: bare_loop(cfg, num_classes, batch, device, plan)
            )
        finally:
            torch.backends.cudnn.benchmark = not flipped
    out["rows"] = {k: v for k, v in rows.items() if v is not None}
    finish_step(out)
    print_step(model_name, out)
    return out


def finish_step(out: dict[str, Any]) -> None:
    """Each row's step time over the bare loop's, and the two headline ratios."""
    rows = out["rows"]
    bare = rows.get("bare", {}).get("median_s", math.nan)
    for row in rows.values():
        row["vs_bare"] = row["median_s"] / bare
    for key, name in (
        ("ratio_compute", "project, batches in memory"),
        ("ratio_with_trial_loader", "project, trial loader"),
    ):
        out[key] = rows.get(name, {}).get("vs_bare", math.nan)


def print_step(model_name: str, out: dict[str, Any]) -> None:
    cfg = out["config"]
    say(
        f"{model_name} {cfg['backbone']} {cfg['input_size']}x{cfg['input_size']} batch "
        f"{cfg['batch_size']}, cudnn.benchmark={out['cudnn_benchmark']}; trial loader: "
        f"num_workers={out['trial_loader']['num_workers']}, "
        f"pin_memory={out['trial_loader']['pin_memory']}"
    )
    rows = [{"path": name, **row} for name, row in out["rows"].items()]
    print_table(
        rows,
        [
            ("path", "path", "s"),
            ("s/step", "median_s", ".4f"),
            ("min", "min_s", ".4f"),
            ("img/s", "images_per_s", ".1f"),
            ("data", "data_share", ".0%"),
            ("peak GiB", "peak_gib", ".2f"),
            ("vs bare", "vs_bare", ".3f"),
        ],
    )
    for key, label in (("ratio_compute", "compute only"), ("ratio_with_trial_loader", "with data")):
        ratio = out[key]
        if math.isfinite(ratio):
            verdict = "meets" if ratio <= RATIO_GOAL else "misses"
            say(f"  project / bare ({label}): {ratio:.3f} ({verdict} the <= {RATIO_GOAL} goal)")


# --------------------------------------------------------------------------- spectrum


def with_margin(logits: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """``logits`` with ``margin`` added to the label's class at every labelled pixel."""
    if margin == 0:
        return logits
    valid = labels != 255
    boost = torch.zeros_like(logits)
    index = labels.masked_fill(~valid, 0).unsqueeze(1)
    boost.scatter_(1, index, (margin * valid).unsqueeze(1).to(logits.dtype))
    return logits + boost


def forward_and_logits(
    plan: Plan, device: torch.device, device_name: str
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """DeepLab v3+ eval forward seconds (as the trial evaluates), its standardised float32 logits
    and the batch's labels (with ~10 % ignored pixels)."""
    cfg = paper_config(plan, "deeplabv3plus", device_name)
    seed_everything(cfg.seed)
    _, eval_set, num_classes = build_datasets(cfg)
    images, labels = to_device(next(iter(make_loader(eval_set, cfg, train=False))), device)
    model = build_network(cfg, num_classes, device).eval()

    def forward() -> torch.Tensor:
        with torch.no_grad(), autocast(device, cfg.amp):
            return model(images)

    seconds = median_seconds(forward, plan.repeats, device)
    logits = forward().float()
    if not bool(torch.isfinite(logits).all()):  # keep the timing meaningful all the same
        say("!! the forward gave non-finite logits; the spectrum runs on Gaussian logits")
        logits = torch.randn_like(logits)
    # random weights in eval mode give logits ~1e3; a trained network's spread over a few units
    logits = (logits - logits.mean()) / logits.std()
    generator = torch.Generator(device=device).manual_seed(1)
    ignored = torch.rand(labels.shape, device=device, generator=generator) < 0.1
    return seconds, logits, labels.masked_fill(ignored, 255)


def accumulate(logits: torch.Tensor, labels: torch.Tensor) -> Any:
    """One batch into a fresh ``SpectrumAccumulator``, as the trial's evaluation adds each."""
    return SpectrumAccumulator().update(logits, labels)


def spectrum_figures(plan: Plan, device: torch.device, device_name: str) -> dict[str, Any]:
    forward_s, logits, labels = forward_and_logits(plan, device, device_name)
    free(device)  # the network is gone with the call
    say(f"DeepLab v3+ eval forward, logits {tuple(logits.shape)}: {forward_s:.4f} s")
    rows = []
    for margin in (0.0, 10.0):
        z = with_margin(logits, labels, margin)
        reference = float(F.cross_entropy(z.double(), labels, ignore_index=255))
        runs: dict[str, Callable[[], Any]] = {
            "trial (accumulator, auto)": functools.partial(accumulate, z, labels),
            "single": functools.partial(ce_spectrum, z, labels, precision="single"),
            "double": functools.partial(ce_spectrum, z, labels, precision="double"),
        }
        for mode, run in runs.items():
            reset_peak(device)
            base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            spectrum = run()
            extra = peak_gib(device)
            seconds = median_seconds(run, plan.repeats, device)
            error = abs(float(spectrum.band_profile.sum()) - reference) / reference
            rows.append(
                {
                    "logits": "untrained" if margin == 0 else f"confident (margin {margin:g})",
                    "ce": reference,
                    "mode": mode,
                    "ran": spectrum.precision,
                    "seconds": seconds,
                    "share_of_forward": seconds / forward_s,
                    "parseval_error": error,
                    "extra_gib": None if extra is None else extra - base / 2**30,
                }
            )
        del z
    print_table(
        rows,
        [
            ("logits", "logits", "s"),
            ("CE", "ce", ".4f"),
            ("mode", "mode", "s"),
            ("ran", "ran", "s"),
            ("seconds", "seconds", ".4f"),
            ("of forward", "share_of_forward", ".1%"),
            ("Parseval err", "parseval_error", ".1e"),
            ("extra GiB", "extra_gib", ".2f"),
        ],
    )
    return {"forward_s": forward_s, "logits_shape": list(logits.shape), "rows": rows}


# --------------------------------------------------------------------------- shared device


def train_command(model: str, plan: Plan, device_name: str) -> list[str]:
    """``spectral-sweep train`` of one small trial, as a module run (no install needed)."""
    flags = {
        "--model": model,
        "--backbone": "resnet18",
        "--dataset": "synthetic-smooth",
        "--input-size": plan.shared_size,
        "--num-classes": plan.num_classes,
        "--epochs": plan.shared_epochs,
        "--batch-size": plan.shared_batch,
        "--train-length": plan.shared_train_length,
        "--eval-length": plan.shared_eval_length,
        "--device": device_name,
    }
    args = [str(item) for pair in flags.items() for item in pair]
    return [sys.executable, "-m", "orchestrator.cli", "train", *args, "--json", "--no-progress"]


def run_processes(commands: dict[str, list[str]], timeout: float) -> dict[str, dict[str, Any]]:
    """Start every command at once; wall seconds, exit code and JSON headline of each."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")  # as Ray starts a 1-CPU trial (--cpus-per-trial 1)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as files:
        logs = {
            name: tuple(files.enter_context(open(Path(tmp) / f"{name}.{s}", "w+")) for s in "oe")
            for name in commands
        }
        began = time.perf_counter()
        procs = {
            name: subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=logs[name][0], stderr=logs[name][1]
            )
            for name, cmd in commands.items()
        }
        ended: dict[str, float] = {}
        while len(ended) < len(procs) and time.perf_counter() - began < timeout:
            for name, proc in procs.items():
                if name not in ended and proc.poll() is not None:
                    ended[name] = time.perf_counter() - began
            time.sleep(0.05)
        results = {}
        for name, proc in procs.items():
            if name not in ended:
                proc.kill()  # only our own child, past its time
                proc.wait()
            stdout, stderr = (read_back(f) for f in logs[name])
            results[name] = process_result(proc.returncode, ended.get(name), stdout, stderr)
    return results


def read_back(file: IO[str]) -> str:
    file.flush()
    file.seek(0)
    return file.read()


def process_result(rc: int, wall: float | None, stdout: str, stderr: str) -> dict[str, Any]:
    row: dict[str, Any] = {"rc": rc, "wall_s": wall, "timed_out": wall is None}
    lines = [line for line in stdout.splitlines() if line.strip().startswith("{")]
    if lines:
        summary = json.loads(lines[-1])
        for key in ("epoch_seconds", "miou", "train_loss", "gflops"):
            row[key] = summary.get(key)
    if rc != 0:
        row["stderr_tail"] = stderr.strip().splitlines()[-3:]
    return row


def shared_figures(plan: Plan, device_name: str, deadline: Deadline) -> dict[str, Any]:
    fvcore = importlib.util.find_spec("fvcore") is not None
    say(f"fvcore importable: {fvcore} (train counts FLOPs with it at every evaluation)")
    commands = {m: train_command(m, plan, device_name) for m in ("deeplabv3plus", "dan")}
    say("command: " + " ".join(commands["dan"][1:]))
    limit = max(20.0, deadline.left() / 3)
    alone = {m: run_processes({m: cmd}, limit)[m] for m, cmd in commands.items()}
    together_began = time.perf_counter()
    together = run_processes(commands, max(20.0, deadline.left()))
    together_wall = time.perf_counter() - together_began
    rows = []
    for name in commands:
        a, t = alone[name], together[name]
        rows.append(
            {
                "trial": name,
                "rc": f"{a['rc']}/{t['rc']}",
                "alone_s": a["wall_s"],
                "together_s": t["wall_s"],
                "alone_epoch_s": a.get("epoch_seconds"),
                "together_epoch_s": t.get("epoch_seconds"),
                "miou": t.get("miou"),
            }
        )
        for label, res in (("alone", a), ("together", t)):
            if "stderr_tail" in res:
                say(f"  {name} {label} rc {res['rc']}: " + " | ".join(res["stderr_tail"]))
    print_table(
        rows,
        [
            ("trial", "trial", "s"),
            ("rc alone/tog.", "rc", "s"),
            ("alone s", "alone_s", ".1f"),
            ("together s", "together_s", ".1f"),
            ("epoch s alone", "alone_epoch_s", ".2f"),
            ("epoch s tog.", "together_epoch_s", ".2f"),
            ("mIoU", "miou", ".3f"),
        ],
    )
    walls = [r["wall_s"] for r in alone.values()]
    sequential = sum(walls) if all(w is not None for w in walls) else math.nan
    overlap = together_wall / sequential if sequential == sequential else math.nan
    say(
        f"  both at once: {together_wall:.1f} s against {sequential:.1f} s one after the other "
        f"({overlap:.2f}x; 0.5 would be perfect overlap, 1.0 none)"
    )
    return {
        "commands": {k: v[1:] for k, v in commands.items()},
        "fvcore_importable": fvcore,
        "alone": alone,
        "together": together,
        "together_wall_s": together_wall,
        "sequential_wall_s": sequential,
        "together_over_sequential": overlap,
    }


# --------------------------------------------------------------------------- main


def print_summary(data: dict[str, Any]) -> None:
    """The headline figures of every section that ran."""
    say("\n== summary")
    for key, section in data.items():
        if key.startswith("step_") and isinstance(section, dict):
            bare = section["rows"].get("bare", {})
            say(
                f"{key[5:]:>14}: project/bare {fmt(section.get('ratio_compute'), '.3f')} "
                f"(compute), {fmt(section.get('ratio_with_trial_loader'), '.3f')} (trial loader); "
                f"bare {fmt(bare.get('median_s'), '.4f')} s/step, "
                f"{fmt(bare.get('images_per_s'), '.1f')} img/s, "
                f"{fmt(bare.get('peak_gib'), '.2f')} GiB"
            )
    spectrum = data.get("spectrum")
    if isinstance(spectrum, dict):
        for row in spectrum["rows"]:
            if row["mode"].startswith("trial"):
                say(
                    f"{'spectrum':>14}: {row['logits']}: {row['seconds']:.4f} s, "
                    f"{row['share_of_forward']:.1%} of the forward (ran {row['ran']}), "
                    f"Parseval error {row['parseval_error']:.1e}"
                )
    shared = data.get("shared")
    if isinstance(shared, dict):
        say(
            f"{'shared':>14}: together {fmt(shared['together_wall_s'], '.1f')} s, one after the "
            f"other {fmt(shared['sequential_wall_s'], '.1f')} s "
            f"({fmt(shared['together_over_sequential'], '.2f')}x)"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (ResNet-18, input 65)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="JSON directory")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds; optional runs skip")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = Deadline(args.budget)
    plan = SMOKE if args.smoke else PAPER
    plan = replace(
        plan,
        steps=args.steps if args.steps is not None else plan.steps,
        warmup=args.warmup if args.warmup is not None else plan.warmup,
    )
    device = resolve_device(args.device)
    device_name = device.type
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cudnn_benchmark = trial_sets_cudnn_benchmark()
    torch.backends.cudnn.benchmark = cudnn_benchmark  # as the trial runs
    report = Report(out)
    report.data["env"] = environment(device, plan, cudnn_benchmark)
    say(" ".join(f"{k}={v}" for k, v in report.data["env"].items() if k != "plan"))
    say(f"plan: {asdict(plan)}")
    if "step" in args.only:
        for model in plan.models:
            report.section(
                f"step_{model}",
                functools.partial(step_figures, model, plan, device, device_name, deadline),
            )
    if "spectrum" in args.only:
        report.section("spectrum", lambda: spectrum_figures(plan, device, device_name))
    if "shared" in args.only:
        report.section("shared", lambda: shared_figures(plan, device_name, deadline))
    report.data["elapsed_s"] = args.budget - deadline.left()
    report.save()
    print_summary(report.data)
    say(f"\n{report.data['elapsed_s']:.1f} s; figures in {report.path}")
    for line in report.data["errors"]:
        say(f"error: {line}")
    return 1 if report.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
