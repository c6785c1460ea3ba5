"""Models: registry, forward shapes, feature truncation (LRG), prunable units, weights loading."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from trainables.errors import InputError
from trainables.models import (
    DAN,
    DeepLabV3Plus,
    PrunableUnit,
    SegmentationModel,
    build_model,
    list_models,
    validate_lrg,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "test_resnet"  # timm's registered test ResNet: 0.37 M parameters
MODELS = ("deeplabv3plus", "dan")


def tiny(name: str, num_classes: int = 5, **kw: object) -> SegmentationModel:
    torch.manual_seed(0)
    return build_model(name, TINY, num_classes=num_classes, **kw).eval()  # type: ignore[arg-type]


def test_registry_lists_both_models() -> None:
    assert list_models() == ["deeplabv3plus", "dan"]
    assert isinstance(tiny("deeplabv3plus"), DeepLabV3Plus)
    assert isinstance(tiny("dan"), DAN)


def test_unknown_model_lists_names() -> None:
    with pytest.raises(InputError, match=r"unknown model 'unet'; choose from: deeplabv3plus, dan"):
        build_model("unet", TINY)


def test_unknown_backbone_lists_close_matches() -> None:
    with pytest.raises(InputError, match=r"unknown backbone 'resnt18'.*resnet18"):
        build_model("deeplabv3plus", "resnt18")


def test_bad_output_stride_and_num_classes() -> None:
    with pytest.raises(InputError, match="output_stride 12"):
        build_model("deeplabv3plus", TINY, output_stride=12)
    with pytest.raises(InputError, match="num_classes 0"):
        build_model("dan", TINY, num_classes=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [64, 65])
@pytest.mark.parametrize("lrg", [None, 3, 9, 16])
def test_forward_shape(name: str, size: int, lrg: int | None) -> None:
    model = tiny(name, lrg=lrg)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5, size, size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_non_square_input(name: str) -> None:
    model = tiny(name, lrg=7)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 80)).shape == (1, 5, 48, 80)


@pytest.mark.parametrize("name", MODELS)
def test_native_grid_matches_features(name: str) -> None:
    model = tiny(name)
    for size in (64, 65, 97):
        low, _, _ = model.encoder(torch.zeros(1, 3, size, size))
        assert model.native_grid(size) == low.shape[-1]
    assert model.native_grid(513) == 129
    assert model.native_grid(65) == 17


@pytest.mark.parametrize("name", MODELS)
def test_lrg_native_equals_none(name: str) -> None:
    model = tiny(name)
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        native = model(x)
        model.lrg = model.native_grid(65)
        assert torch.equal(model(x), native)
        model.lrg = 9
        assert not torch.allclose(model(x), native)


@pytest.mark.parametrize("name", MODELS)
def test_posthoc_lrg_change_equals_construction(name: str) -> None:
    built = tiny(name, lrg=9)
    changed = tiny(name)
    changed.lrg = 9
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        assert torch.equal(built(x), changed(x))
    changed.lrg = None
    assert changed.lrg is None


def test_deeplab_decoder_runs_at_lrg() -> None:
    model = tiny("deeplabv3plus", lrg=7)
    assert isinstance(model, DeepLabV3Plus)
    shapes: list[tuple[int, ...]] = []
    model.decoder.fuse2.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        model(torch.randn(1, 3, 65, 65))
    assert shapes == [(1, 256, 7, 7)]


def _conv_bn_relu(x: torch.Tensor, block: nn.Module) -> torch.Tensor:
    """A ConvBNAct block in eval mode, written out with torch.nn.functional."""
    conv, bn = block.conv, block.bn  # type: ignore[union-attr]
    x = torch.nn.functional.conv2d(x, conv.weight, None, padding=conv.padding)
    x = torch.nn.functional.batch_norm(
        x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
    )
    return torch.relu(x)


@pytest.mark.parametrize(("size", "lrg"), [((65, 65), 9), ((64, 50), 7)])
def test_deeplab_truncation_follows_the_definition(size: tuple[int, int], lrg: int) -> None:
    """DESIGN's feature truncation at LRG s, written out step by step: the decoder's inputs
    (stride-4 features and ASPP output) resized bilinearly to s x s, the decoder convolutions at
    s x s, the logits upsampled bilinearly to the input. The encoder and ASPP are the model's;
    BatchNorm statistics are made non-trivial so that a skipped step would show."""
    model = tiny("deeplabv3plus", lrg=lrg)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    x = torch.randn(1, 3, *size, generator=generator)
    decoder = model.decoder
    with torch.no_grad():
        low, _mid, aspp = model.encode(x)

        def to_grid(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.interpolate(
                t, size=(lrg, lrg), mode="bilinear", align_corners=False
            )

        fused = torch.cat([to_grid(aspp), _conv_bn_relu(to_grid(low), decoder.reduce)], dim=1)
        fused = _conv_bn_relu(_conv_bn_relu(fused, decoder.fuse1), decoder.fuse2)
        logits = torch.nn.functional.conv2d(
            fused, decoder.classifier.weight, decoder.classifier.bias
        )
        expected = torch.nn.functional.interpolate(
            logits, size=size, mode="bilinear", align_corners=False
        )
        got = model(x)
    assert logits.shape[-2:] == (lrg, lrg)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_dan_stage_grids_capped_at_lrg() -> None:
    model = tiny("dan", lrg=7)  # native stage grids at 65: 17 (stride 4), 9 (8), 5 (16)
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("deep_reduce", "mid_fuse", "low_fuse2"):
        block = getattr(model.decoder, name)
        block.register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, o.shape[-2:]))
    with torch.no_grad():
        model(torch.randn(1, 3, 65, 65))
    assert shapes == {"deep_reduce": (5, 5), "mid_fuse": (7, 7), "low_fuse2": (7, 7)}


@pytest.mark.parametrize("bad", [2, 0, -1, 3.5, "9", True])
def test_lrg_type_and_lower_bound(bad: object) -> None:
    with pytest.raises(InputError, match="lrg"):
        build_model("deeplabv3plus", TINY, lrg=bad)  # type: ignore[arg-type]
    model = tiny("dan")
    with pytest.raises(InputError, match="lrg"):
        model.lrg = bad  # type: ignore[assignment]


def test_lrg_above_native_fails_at_forward() -> None:
    model = tiny("deeplabv3plus", lrg=18)  # native grid at 65 is 17
    with pytest.raises(InputError, match=r"lrg 18 is outside \[3, 17\]"):
        model(torch.zeros(1, 3, 65, 65))


def test_validate_lrg() -> None:
    import numpy as np

    assert validate_lrg(None, 129) is None
    assert validate_lrg(np.int64(65), 129) == 65  # type: ignore[arg-type]
    assert tiny("dan", lrg=np.int64(9)).lrg == 9
    assert validate_lrg(3, 129) == 3
    assert validate_lrg(129, 129) == 129
    for bad in (2, 130):
        with pytest.raises(InputError, match=rf"lrg {bad} is outside \[3, 129\]"):
            validate_lrg(bad, 129)


@pytest.mark.parametrize("name", MODELS)
def test_train_step_backpropagates(name: str) -> None:
    model = tiny(name, lrg=9).train()
    out = model(torch.randn(2, 3, 64, 64))
    nn.functional.cross_entropy(out, torch.randint(0, 5, (2, 64, 64))).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("name", MODELS)
def test_encoder_decoder_split_covers_all_parameters(name: str) -> None:
    model = tiny(name)
    split = [
        p for m in (*model.encoder_modules(), *model.decoder_modules()) for p in m.parameters()
    ]
    assert len({id(p) for p in split}) == len(split) == len(list(model.parameters()))
    assert any(m is getattr(model, "aspp", None) for m in model.encoder_modules())


@pytest.mark.parametrize("name", MODELS)
def test_architecture(name: str) -> None:
    arch = tiny(name, num_classes=7).architecture()
    assert {k: arch[k] for k in ("name", "backbone", "num_classes", "output_stride")} == {
        "name": name,
        "backbone": TINY,
        "num_classes": 7,
        "output_stride": 16,
    }


def test_dan_without_aspp() -> None:
    model = tiny("dan", aspp=False)
    assert isinstance(model, DAN) and model.aspp is None
    assert not any("aspp" in u.name for u in model.prunable_units())
    assert model.architecture()["aspp"] is False
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize(("stride", "rates"), [(8, [12, 24, 36]), (32, [3, 6, 9])])
def test_output_stride_scales_aspp_rates(stride: int, rates: list[int]) -> None:
    model = tiny("deeplabv3plus", output_stride=stride)
    assert isinstance(model, DeepLabV3Plus)
    dilations = [m.dilation[0] for m in model.aspp.modules() if isinstance(m, nn.Conv2d)]
    assert dilations[:5] == [1, *rates, 1]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, _, deep = model.encoder(x)
        assert deep.shape[-1] == 64 // stride
        assert model(x).shape == (1, 5, 64, 64)
    assert model.architecture()["output_stride"] == stride


# --- prunable units -------------------------------------------------------------------------


def check_units(model: SegmentationModel) -> list[PrunableUnit]:
    """Assert the model's units are well formed; return them."""
    units = model.prunable_units()
    names = [u.name for u in units]
    assert len(set(names)) == len(names)
    modules = dict(model.named_modules())
    for u in units:
        assert modules[u.name] is u.conv
        assert u.conv.out_channels == u.bn.num_features
        assert u.conv.groups == 1
        assert u.kind == ("decoder" if u.name.startswith("decoder.") else "encoder")
        for c in u.consumers:
            assert c.conv.groups == 1
            assert c.offset >= 0 and c.offset + u.conv.out_channels <= c.conv.in_channels
    # consumers' input channels are covered without overlap where several units feed one conv
    ranges: dict[int, list[tuple[int, int]]] = {}
    for u in units:
        for c in u.consumers:
            ranges.setdefault(id(c.conv), []).append((c.offset, c.offset + u.conv.out_channels))
    for spans in ranges.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    # never the residual stream, the stem or the classifier
    forbidden = ("conv3", "downsample", "backbone.conv1", "classifier", "project")
    assert not any(part in n for n in names for part in forbidden)
    return units


@pytest.mark.parametrize("name", MODELS)
def test_prunable_units_well_formed(name: str) -> None:
    units = check_units(tiny(name))
    assert sum(u.kind == "decoder" for u in units) == {"deeplabv3plus": 3, "dan": 6}[name]


@pytest.mark.parametrize("name", MODELS)
def test_units_of_compacted_model_stay_exact(name: str) -> None:
    """After SFP + compaction the units (offsets follow widths) still describe the network."""
    from trainables.compaction import compact
    from trainables.pruning import SoftFilterPruner

    model = tiny(name)
    SoftFilterPruner(model, 0.3, 0.5).step()
    small = compact(model)
    assert isinstance(small, SegmentationModel)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)
    units = check_units(small)
    assert len(units) == len(model.prunable_units())
    SoftFilterPruner(small, 0.3, 0.5).step()
    smaller = compact(small)
    with torch.no_grad():
        assert torch.allclose(smaller(x), small(x), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_unit_consumer_mapping_is_exact(name: str) -> None:
    """With its consumers' input slice zeroed, a unit's own weights cannot reach the output."""
    model = tiny(name)
    x = torch.randn(2, 3, 64, 64)
    generator = torch.Generator().manual_seed(1)
    for u in model.prunable_units():
        with torch.no_grad():
            for c in u.consumers:
                c.conv.weight[:, c.offset : c.offset + u.conv.out_channels] = 0
            before = model(x)
            u.conv.weight.copy_(torch.randn(u.conv.weight.shape, generator=generator))
            u.bn.bias.add_(1.0)
            assert torch.allclose(model(x), before, atol=1e-6), u.name


def test_resnet_units_cover_block_internals() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", "resnet18", num_classes=3)
    encoder = [u.name for u in model.prunable_units() if u.name.startswith("encoder.")]
    assert len(encoder) == 8  # 8 BasicBlocks, conv1 each
    assert all(n.endswith(".conv1") for n in encoder)


# --- weights ------------------------------------------------------------------------------


def test_local_pretrained_round_trip(tmp_path: Path) -> None:
    source = tiny("deeplabv3plus")
    path = tmp_path / "encoder.pt"
    torch.save(source.encoder.backbone.state_dict(), path)
    torch.manual_seed(123)
    loaded = build_model("dan", TINY, num_classes=5, pretrained=path)
    expected = source.encoder.backbone.state_dict()
    got = loaded.encoder.backbone.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_local_pretrained_accepts_timm_classification_checkpoint(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(7)
    classifier = timm.create_model(TINY, pretrained=False)
    path = tmp_path / "classifier.pth"
    torch.save({"state_dict": classifier.state_dict()}, path)  # head keys (fc.*) are ignored
    model = build_model("deeplabv3plus", TINY, pretrained=str(path))
    assert torch.equal(
        model.encoder.backbone.layer1[0].conv1.weight,  # type: ignore[index,union-attr]
        classifier.layer1[0].conv1.weight,  # type: ignore[index,union-attr]
    )


def test_local_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        build_model("deeplabv3plus", TINY, pretrained=tmp_path / "missing.pt")
    partial = tmp_path / "partial.pt"
    torch.save({"conv1.0.weight": torch.zeros(16, 3, 3, 3)}, partial)
    with pytest.raises(InputError, match="miss"):
        build_model("deeplabv3plus", TINY, pretrained=partial)


# --- ResNet-101 targets at 513 x 513 (paper: decoder 1.3 M, encoder + ASPP 60.1 M) ---------


@pytest.fixture(scope="module")
def deeplab_r101() -> SegmentationModel:
    torch.manual_seed(0)
    return build_model("deeplabv3plus", "resnet101", num_classes=21)


def _params(modules: list[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.slow
def test_deeplab_r101_parameter_targets(deeplab_r101: SegmentationModel) -> None:
    decoder = _params(deeplab_r101.decoder_modules())
    encoder = _params(deeplab_r101.encoder_modules())
    assert decoder == pytest.approx(1.3e6, rel=0.05)
    assert encoder == pytest.approx(60.1e6, rel=0.05)
    assert deeplab_r101.native_grid(513) == 129


@pytest.mark.slow
def test_deeplab_r101_units(deeplab_r101: SegmentationModel) -> None:
    units = deeplab_r101.prunable_units()
    kinds = [u.kind for u in units]
    # 33 Bottlenecks x (conv1, conv2) + 5 ASPP branches; reduce + two 3x3 convs
    assert kinds.count("encoder") == 33 * 2 + 5
    assert kinds.count("decoder") == 3
