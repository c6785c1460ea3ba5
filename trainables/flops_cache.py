"""FLOPs counts on disk, shared by every trial, command and process of a machine (no torch).

Counting an architecture with fvcore builds and traces its network: seconds for a demo
network, about a minute for ResNet-101 at 513. A count depends only on its key (model,
backbone, classes, output stride, prune rates, input size, convention, LRG) and on the code
that builds and counts networks, so each count is stored once as a small JSON file named by
the hash of its key and of that code (:func:`code_version`): a changed model or counting rule
is a new key, never a stale figure. Files are under ``flops/`` of the user's cache folder,
written atomically (:mod:`trainables.disk_cache`: where it is, how to turn it off).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainables.disk_cache import (
    CACHE_ENV,
    cache_folder,
    key_path,
    read_json,
    source_version,
    write_json,
)

#: Bump when a count's meaning changes in a way the source hash cannot see.
FORMAT = 1
#: Modules whose source decides a count (their files are hashed).
_COUNTING_MODULES = (
    "trainables.flops",
    "trainables.flops_conventions",
    "trainables.compaction",
    "trainables.pruning",
    "trainables.models",
)


def report_keys(
    model: str,
    backbone: str,
    input_size: int,
    num_classes: int,
    lrgs: Sequence[int | None],
    prune_rate: float = 0.0,
    decoder_prune_rate: float = 0.0,
    *,
    output_stride: int | None = None,
    convention: str = "compact",
) -> dict[int | None, tuple[Any, ...]]:
    """The key of each LRG's count, as ``trainables.flops.grid_flops`` stores it:
    (model, backbone, classes, output stride, prune rate, decoder rate, input size,
    convention, lrg), the decoder rate as the convention counts it."""
    from trainables.flops_conventions import (
        check_convention,
        convention_stride,
        paper_decoder_rate,
    )
    from trainables.grids import native_grid_size

    stride = convention_stride(check_convention(convention), output_stride)
    keys: dict[int | None, tuple[Any, ...]] = {}
    for lrg in dict.fromkeys(lrgs):
        rate = decoder_prune_rate
        if convention == "paper":
            rate = paper_decoder_rate(model, lrg, native_grid_size(input_size), rate)
        keys[lrg] = (
            model,
            backbone,
            num_classes,
            stride,
            prune_rate,
            rate,
            input_size,
            convention,
            lrg,
        )
    return keys


def cached_gflops(
    model: str,
    backbone: str,
    input_size: int,
    num_classes: int,
    lrgs: Sequence[int | None],
    prune_rate: float = 0.0,
    decoder_prune_rate: float = 0.0,
    convention: str = "compact",
) -> dict[int | None, float] | None:
    """GFLOPs of each LRG when every one is on disk, else None (no torch import either way)."""
    keys = report_keys(
        model, backbone, input_size, num_classes, lrgs, prune_rate, decoder_prune_rate,
        convention=convention,
    )  # fmt: skip
    out: dict[int | None, float] = {}
    for lrg, key in keys.items():
        stored = load(key)
        if stored is None:
            return None
        out[lrg] = float(stored["gflops"])
    return out


def cache_dir() -> Path | None:
    """The FLOPs cache folder (not created here), or None when turned off."""
    return cache_folder("flops")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the counting code and of the fvcore and torch versions."""
    return source_version(_COUNTING_MODULES, ("fvcore", "torch", "timm"), FORMAT)


def _model_identity(model: str) -> str:
    """Where a model's constructor lives, so a registered model of the same name is its own
    key."""
    from trainables.model_registry import MODELS

    entry = MODELS.get(model)
    if isinstance(entry, str) or entry is None:
        return str(entry)
    return f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', repr(entry))}"


def _path(key: tuple[Any, ...]) -> Path | None:
    return key_path(cache_dir(), [*key, _model_identity(str(key[0])), code_version()])


def load(key: tuple[Any, ...]) -> dict[str, Any] | None:
    """The stored report of ``key`` (a dict of FlopsReport fields), or None."""
    data = read_json(_path(key))
    report = data.get("report") if isinstance(data, dict) else None
    return report if isinstance(report, dict) else None


def store(key: tuple[Any, ...], report: Mapping[str, Any]) -> None:
    """Write ``report`` for ``key`` atomically; a cache that cannot be written is skipped."""
    payload = {"key": [str(k) for k in key], "report": dict(report)}
    write_json(_path(key), payload, temporary_prefix=".flops-")


__all__ = [
    "CACHE_ENV",
    "cache_dir",
    "cached_gflops",
    "code_version",
    "load",
    "report_keys",
    "store",
]
