"""Encoders: any timm backbone as a (stride-4, stride-8, deepest) feature extractor.

The backbone is ``timm.create_model(name, features_only=True, output_stride=16)``. Weights are
random unless asked for: ``pretrained=True`` fetches timm's hub weights (needs network), a path
loads a local state dict (a ``.pth``/``.pt`` file read with ``weights_only=True``, or a
``.safetensors`` file; a timm classification checkpoint works, head keys are ignored). Nothing
downloads by default.
"""

from __future__ import annotations

import difflib
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from trainables.errors import InputError
from trainables.models.units import Consumer, PrunableUnit
from trainables.weights_file import check_weights_file

#: Output strides the heads are built for (ASPP rates scale with it). 16 is the paper's setting;
#: 32 (no dilation) is the configuration its encoder FLOPs (95.6 G) correspond to.
OUTPUT_STRIDES = (8, 16, 32)
#: Prefixes stripped from checkpoint keys (DataParallel, our own model, common wrappers).
_KEY_PREFIXES = ("", "module.", "encoder.backbone.", "backbone.", "encoder.", "model.")
#: What a pretrained weights file must hold (the end of every error about its content).
STATE_DICT_EXPECTED = (
    "expected a state dict of the backbone (a .pth/.pt/.safetensors file holding a mapping of "
    "parameter names to tensors)"
)


def check_backbone(name: str) -> None:
    """Raise :class:`InputError` naming close timm matches when ``name`` is not a timm model."""
    import timm

    if isinstance(name, str) and timm.is_model(name):
        return
    close = difflib.get_close_matches(str(name), timm.list_models(), n=6, cutoff=0.6)
    hint = ", ".join(close) if close else "none (see timm.list_models())"
    raise InputError(f"unknown backbone {name!r}; close timm matches: {hint}")


def _unwrap(state: Any, shown: str) -> dict[str, Tensor]:
    """The parameter-name -> tensor mapping in a loaded file (``state_dict``/``model``/``encoder``
    wrappers unwrapped), or an InputError saying what was found instead."""
    for key in ("state_dict", "model", "encoder"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise InputError(
            f"pretrained weights {shown} hold a {type(state).__name__}; {STATE_DICT_EXPECTED}"
        )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise InputError(
            f"pretrained weights {shown} hold a mapping without tensors; {STATE_DICT_EXPECTED}"
        )
    return tensors


def _not_weights(shown: str) -> InputError:
    # torch.load's own message advises weights_only=False (running the file's code): never shown
    return InputError(
        f"pretrained weights {shown} are not a PyTorch or safetensors file of tensors; "
        f"{STATE_DICT_EXPECTED}"
    )


def _read_weights(path: Path, *, lazy: bool) -> Any:
    """The object in a weights file: safetensors by suffix, else ``torch.load(weights_only=True)``
    (``lazy``: memory-mapped tensors, or only the safetensors keys, for a cheap check)."""
    shown = repr(str(path))
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            if lazy:
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    return {key: torch.empty(0) for key in handle.keys()}  # noqa: SIM118 (not iterable)
            return load_file(str(path), device="cpu")
        mmap = lazy and zipfile.is_zipfile(path)  # mmap needs the zip format of torch.save
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # unpickling and safetensors errors come in many types
        if isinstance(err, OSError) and err.strerror:  # the file system's (permissions, I/O)
            raise InputError(
                f"pretrained weights {shown} cannot be read ({err.strerror})"
            ) from None
        raise _not_weights(shown) from None


def check_state_file(path: str | Path) -> None:
    """Check, cheaply, that ``path`` holds a state dict (tensors memory-mapped, not read), so a
    bad weights file fails before a trial loads data or builds a network."""
    path = check_weights_file(path)
    _unwrap(_read_weights(path, lazy=True), repr(str(path)))


def load_state_file(path: Path) -> dict[str, Tensor]:
    """The state dict in ``path`` (``.safetensors``, else ``torch.load(weights_only=True)``),
    unwrapped if wrapped; a file that is not one is an InputError naming it."""
    path = check_weights_file(path)
    return _unwrap(_read_weights(path, lazy=False), repr(str(path)))


def load_backbone_weights(backbone: nn.Module, path: Path, name: str) -> None:
    """Load the local state dict at ``path`` into ``backbone``; every tensor must be there."""
    state = load_state_file(path)
    target = backbone.state_dict()

    def strip(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    best = max((strip(p) for p in _KEY_PREFIXES), key=lambda d: len(d.keys() & target.keys()))
    missing = [k for k in target if k not in best]
    if missing:
        raise InputError(
            f"pretrained weights {str(path)!r} miss {len(missing)} of {len(target)} tensors of "
            f"timm {name!r} (first: {missing[0]}); expected that backbone's state dict"
        )
    bad = [k for k in target if best[k].shape != target[k].shape]
    if bad:
        raise InputError(
            f"pretrained weights {str(path)!r}: {bad[0]} has shape {tuple(best[bad[0]].shape)}, "
            f"timm {name!r} expects {tuple(target[bad[0]].shape)}"
        )
    backbone.load_state_dict({k: best[k] for k in target}, strict=True)


def create_backbone(name: str, output_stride: int, pretrained: bool | str | Path) -> nn.Module:
    """The timm ``features_only`` backbone, with weights as ``pretrained`` asks."""
    import timm

    check_backbone(name)
    if output_stride not in OUTPUT_STRIDES:
        raise InputError(f"output_stride {output_stride!r} not supported; choose from 8, 16, 32")
    hub = pretrained is True
    try:
        backbone = timm.create_model(
            name, features_only=True, output_stride=output_stride, pretrained=hub
        )
    except Exception as err:  # timm / hub errors have no common base
        if hub:
            raise InputError(
                f"could not load timm hub weights for {name!r} ({type(err).__name__}); "
                "the hub needs network: pass a local state-dict path as pretrained instead"
            ) from err
        raise InputError(
            f"backbone {name!r} does not support features_only with output_stride "
            f"{output_stride}: {err}"
        ) from err
    if pretrained not in (False, True, None, "", "false"):
        load_backbone_weights(backbone, Path(str(pretrained)).expanduser(), name)
    return backbone


def _pairs(block: nn.Module) -> list[tuple[str, str, str, str]]:
    """(producer conv, its BN, its activation, consumer conv) attribute names in one block.

    timm ResNet blocks: Bottleneck conv1 -> conv2 -> conv3 (conv3 writes the residual stream),
    BasicBlock conv1 -> conv2. Blocks with anti-aliasing layers (fixed per-channel filters) are
    left out, as are any whose attributes are not plain convs and BatchNorms.
    """
    if not all(hasattr(block, a) for a in ("conv1", "bn1", "conv2", "bn2")):
        return []
    aa = getattr(block, "aa", None)
    if aa is not None and not isinstance(aa, nn.Identity):
        return []
    if hasattr(block, "conv3") and hasattr(block, "bn3"):
        return [("conv1", "bn1", "act1", "conv2"), ("conv2", "bn2", "act2", "conv3")]
    return [("conv1", "bn1", "act1", "conv2")]


def _prunable(conv: Any, bn: Any, consumer: Any) -> bool:
    """A plain (ungrouped) conv + BN whose channels all feed one ungrouped consumer conv."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and isinstance(consumer, nn.Conv2d)
        and conv.groups == 1
        and consumer.groups == 1
        and conv.out_channels == bn.num_features == consumer.in_channels
    )


class TimmEncoder(nn.Module):
    """A timm backbone returning (stride-4 ``low``, stride-8 ``mid``, deepest ``deep``) features."""

    def __init__(
        self, backbone: str, output_stride: int = 16, pretrained: bool | str | Path = False
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.backbone = create_backbone(backbone, output_stride, pretrained)
        info: Any = self.backbone.feature_info
        reductions: list[int] = list(info.reduction())
        channels: list[int] = list(info.channels())
        if 4 not in reductions:
            raise InputError(
                f"backbone {backbone!r} has no stride-4 feature (strides {reductions})"
            )
        self.low_index = reductions.index(4)
        self.mid_index = reductions.index(8) if 8 in reductions else len(reductions) - 1
        self.deep_index = len(reductions) - 1
        self.low_channels = channels[self.low_index]
        self.mid_channels = channels[self.mid_index]
        self.deep_channels = channels[self.deep_index]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.backbone(x)
        return feats[self.low_index], feats[self.mid_index], feats[self.deep_index]

    def low_grid(self, input_size: int) -> int:
        """Stride-4 feature size for a square ``input_size`` input, from a shape-only probe.

        The probe runs on the ``meta`` device (shapes, no arithmetic, the real weights untouched),
        so it is exact for any backbone's padding arithmetic and costs milliseconds.
        """
        tensors = {
            name: torch.empty_like(t, device="meta")
            for name, t in (*self.backbone.named_parameters(), *self.backbone.named_buffers())
        }
        x = torch.empty(1, 3, input_size, input_size, device="meta")
        with torch.no_grad():
            feats = functional_call(self.backbone, tensors, (x,))
        return int(feats[self.low_index].shape[-1])

    def block_outputs(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """The last conv + BN of each residual block (conv3 / bn3 of a bottleneck, conv2 / bn2 of
        a basic block): the convs that write the residual stream, never pruned in training but
        pruned in the paper's FLOPs convention (He et al.'s ResNet setting)."""
        found: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []
        for _path, block in self.backbone.named_modules():
            pairs = _pairs(block)
            if not pairs:
                continue
            last = "conv3" if len(pairs) == 2 else "conv2"
            conv, bn = getattr(block, last, None), getattr(block, "bn" + last[-1], None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                found.append((conv, bn))
        return found

    def residual_units(self, prefix: str) -> list[PrunableUnit]:
        """Prunable channels internal to residual blocks (none for non-ResNet-style backbones)."""
        units: list[PrunableUnit] = []
        for path, block in self.backbone.named_modules():
            for conv_name, bn_name, act_name, consumer_name in _pairs(block):
                conv, bn = getattr(block, conv_name), getattr(block, bn_name)
                consumer, act = getattr(block, consumer_name), getattr(block, act_name, None)
                if _prunable(conv, bn, consumer) and isinstance(act, nn.Module):
                    units.append(
                        PrunableUnit(
                            name=f"{prefix}{path}.{conv_name}",
                            conv=conv,
                            bn=bn,
                            consumers=(Consumer(consumer, 0),),
                            kind="encoder",
                            act=act,
                            extra={"block": type(block).__name__},
                        )
                    )
        return units
