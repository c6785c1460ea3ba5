"""Soft filter pruning: counts, norm order, regrowth, exact compaction, rates, the real models."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.compaction import FoldedConv2d, compact, prune_for_counting
from trainables.errors import InputError
from trainables.flops import has_zeroed_filters
from trainables.models import SegmentationModel, build_model
from trainables.models.units import Consumer, PrunableUnit
from trainables.pruning import (
    SoftFilterPruner,
    filter_norms,
    prune_count,
    pruned_fraction,
    validate_rate,
    zero_filters,
    zeroed_mask,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RATES = (0.2, 0.4, 0.6, 0.9)


# --- a tiny model family with the real structures ---------------------------------------------


class ConvBN(nn.Module):
    """Conv + BN + ReLU (``bias`` for the conv-bias path)."""

    def __init__(self, cin: int, cout: int, k: int = 1, dilation: int = 1, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=bias
        )
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))

    def unit(self, name: str, kind: str, *consumers: tuple[nn.Conv2d, int]) -> PrunableUnit:
        cons = tuple(Consumer(c, o) for c, o in consumers)
        return PrunableUnit(name, self.conv, self.bn, cons, kind)  # type: ignore[arg-type]


class Bottleneck(nn.Module):
    """conv1/bn1 -> conv2/bn2 (3x3) -> conv3/bn3, plus the skip: only conv1 and conv2 prune."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(x + self.bn3(self.conv3(y)))

    def units(self, name: str) -> list[PrunableUnit]:
        return [
            PrunableUnit(f"{name}.conv1", self.conv1, self.bn1, (Consumer(self.conv2),), "encoder"),
            PrunableUnit(f"{name}.conv2", self.conv2, self.bn2, (Consumer(self.conv3),), "encoder"),
        ]


class Pooled(ConvBN):
    """ASPP's image-pooling branch: pool, 1x1 conv + BN + ReLU, broadcast."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.mean((2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])


class ASPPLike(nn.Module):
    """Branches of different widths concatenated into a 1x1 projection (consumer offsets)."""

    def __init__(self, cin: int, widths: tuple[int, int, int] = (8, 6, 10), out: int = 12):
        super().__init__()
        self.branches = nn.ModuleList([ConvBN(cin, widths[0]), ConvBN(cin, widths[1], 3, 2)])
        self.pooling = Pooled(cin, widths[2])
        self.project = ConvBN(sum(widths), out)

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        return self.project(torch.cat([*outs, self.pooling(x)], dim=1))

    def units(self) -> list[PrunableUnit]:
        blocks = [*self.branches, self.pooling]
        offsets = [sum(b.conv.out_channels for b in blocks[:i]) for i in range(len(blocks))]
        return [
            block.unit(f"aspp.{i}", "encoder", (self.project.conv, offset))
            for i, (block, offset) in enumerate(zip(blocks, offsets, strict=True))
        ]


class TinySeg(nn.Module):
    """Stem -> bottleneck (low) -> bottleneck at stride 2 -> ASPP; decoder concat; classifier."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = ConvBN(3, 16, 3)
        self.block1, self.block2 = Bottleneck(16, 8), Bottleneck(16, 12)
        self.aspp = ASPPLike(16)
        self.reduce = ConvBN(16, 6)  # the 48-channel reduce of DeepLab v3+
        self.fuse1 = ConvBN(12 + 6, 10, 3, bias=True)
        self.fuse2 = ConvBN(10, 10, 3)
        self.classifier = nn.Conv2d(10, num_classes, 1)  # never pruned

    def forward(self, x: Tensor) -> Tensor:
        low = self.block1(self.stem(x))
        deep = self.aspp(self.block2(F.avg_pool2d(low, 2)))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse2(self.fuse1(torch.cat([deep, self.reduce(low)], 1))))

    def prunable_units(self) -> list[PrunableUnit]:
        offset = self.fuse1.conv.in_channels - self.reduce.conv.out_channels
        return [
            *self.block1.units("block1"),
            *self.block2.units("block2"),
            *self.aspp.units(),
            self.reduce.unit("reduce", "decoder", (self.fuse1.conv, offset)),
            self.fuse1.unit("fuse1", "decoder", (self.fuse2.conv, 0)),
            self.fuse2.unit("fuse2", "decoder", (self.classifier, 0)),
        ]


def tiny_seg(seed: int = 0) -> TinySeg:
    """A TinySeg with random BN affine pairs and running stats (so BN is not the identity)."""
    torch.manual_seed(seed)
    model = TinySeg()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 12, 12))
    return model.eval()


def image(seed: int = 1, size: int = 12) -> Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max())


# --- rates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.1, 0.95, 1, float("nan"), "0.2", None, True])
def test_validate_rate_rejects(value: object) -> None:
    with pytest.raises(InputError, match="decoder_prune_rate") as err:
        validate_rate("decoder_prune_rate", value)
    assert "\n" not in str(err.value)


def test_validate_rate_accepts_bounds() -> None:
    assert validate_rate("prune_rate", 0) == 0.0
    assert validate_rate("prune_rate", 0.9) == 0.9
    assert isinstance(validate_rate("prune_rate", 0), float)


def test_pruner_validates_rates() -> None:
    with pytest.raises(InputError, match="encoder_rate"):
        SoftFilterPruner(tiny_seg(), 1.5, 0.2)
    with pytest.raises(InputError, match="decoder_rate"):
        SoftFilterPruner(tiny_seg(), 0.2, -0.2)


def test_prune_count_is_floor_without_float_slips() -> None:
    assert prune_count(0.29, 100) == 29  # 0.29 * 100 == 28.999999999999996
    assert prune_count(0.9, 1) == 0
    assert [prune_count(0.4, n) for n in (1, 2, 3, 5, 8)] == [0, 0, 1, 2, 3]


# --- step -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_step_zeroes_floor_count_of_smallest_norms(rate: float) -> None:
    model = tiny_seg()
    decoder_rate = rate / 2
    norms = {u.name: filter_norms(u).clone() for u in model.prunable_units()}
    before = state(model)
    counts = SoftFilterPruner(model, rate, decoder_rate).step()
    expected = {"encoder": 0, "decoder": 0}
    for unit in model.prunable_units():
        p = rate if unit.kind == "encoder" else decoder_rate
        k = math.floor(p * unit.conv.out_channels)
        expected[unit.kind] += k
        zeroed = torch.nonzero(zeroed_mask(unit)).flatten()
        assert len(zeroed) == k, unit.name
        assert set(zeroed.tolist()) == set(norms[unit.name].argsort()[:k].tolist()), unit.name
        assert torch.equal(unit.conv.weight[zeroed], torch.zeros_like(unit.conv.weight[zeroed]))
    # soft: only kernels change; every BN affine pair and conv bias is left as it was
    for key, value in model.state_dict().items():
        if not key.endswith(".weight") or ".bn" in key or "bn" in key.split(".")[-2]:
            assert torch.equal(before[key], value), key
    assert counts == {**expected, "total": expected["encoder"] + expected["decoder"]}
    assert counts["encoder"] > 0 and counts["total"] > counts["encoder"]


def test_ties_go_to_the_lower_index() -> None:
    model = tiny_seg()
    unit = model.prunable_units()[0]
    with torch.no_grad():
        unit.conv.weight.fill_(0.5)
    SoftFilterPruner(model, 0.5, 0.0, units=[unit]).step()
    assert torch.nonzero(zeroed_mask(unit)).flatten().tolist() == [0, 1, 2, 3]


def test_pruned_channels_emit_their_bn_shift_constant_in_eval() -> None:
    """Kernel 0, BN kept: in eval each pruned channel is relu(beta - gamma * mean / std)."""
    model = tiny_seg()
    SoftFilterPruner(model, 0.5, 0.5).step()
    captured: dict[str, Tensor] = {}
    units = model.prunable_units()
    hooks = [
        u.bn.register_forward_hook(lambda _m, _i, out, n=u.name: captured.__setitem__(n, out))
        for u in units
    ]
    with torch.no_grad():
        model(image())
    for h in hooks:
        h.remove()
    for unit in units:
        mask = zeroed_mask(unit)
        bn = unit.bn
        assert bn.running_mean is not None and bn.running_var is not None
        bias = unit.conv.bias if unit.conv.bias is not None else torch.zeros(len(mask))
        by_hand = (bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight
        by_hand = (by_hand + bn.bias)[mask]
        out = captured[unit.name][:, mask]
        assert out.numel() > 0, unit.name
        assert torch.allclose(out, by_hand.view(1, -1, 1, 1).expand_as(out), atol=1e-6), unit.name
        assert bool(by_hand.detach().abs().gt(0).any()), unit.name  # the BN shift is not 0


def test_rate_zero_is_a_no_op() -> None:
    model = tiny_seg()
    before = state(model)
    assert SoftFilterPruner(model, 0.0, 0.0).step() == {"encoder": 0, "decoder": 0, "total": 0}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pruned_fraction(model)["total"] == 0.0


def test_filters_stay_trainable_grow_back_and_are_repruned() -> None:
    model = tiny_seg().train()
    pruner = SoftFilterPruner(model, 0.5, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    target = torch.randint(0, 3, (2, 12, 12), generator=torch.Generator().manual_seed(2))

    def train_step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(image()), target).backward()
        optimizer.step()

    train_step()  # momentum buffers hold the filters' recent updates
    pruner.step()
    units = model.prunable_units()
    masks = {u.name: zeroed_mask(u) for u in units}
    assert all(p.requires_grad for p in model.parameters())
    train_step()
    regrown = sum(int((filter_norms(u)[masks[u.name]] > 0).sum()) for u in units)
    assert regrown == sum(int(m.sum()) for m in masks.values())  # none stayed at zero
    assert pruned_fraction(model)["total"] == 0.0
    pruner.step()
    for unit in units:
        k = math.floor(0.5 * unit.conv.out_channels)
        assert int(zeroed_mask(unit).sum()) == k, unit.name


def test_pruned_kernels_still_receive_gradient() -> None:
    """Soft pruning: with the BN pair kept, a zeroed kernel whose channel is alive after the ReLU
    (train-mode BN of a constant emits its bias: alive when the bias is > 0) gets a non-zero
    gradient (hard pruning, which zeroed the BN too, gave exactly 0 to every one)."""
    model = tiny_seg().train()
    SoftFilterPruner(model, 0.5, 0.5).step()
    target = torch.randint(0, 3, (2, 12, 12), generator=torch.Generator().manual_seed(2))
    F.cross_entropy(model(image()), target).backward()
    alive_total = 0
    for unit in model.prunable_units():
        mask = zeroed_mask(unit)
        grad = unit.conv.weight.grad
        assert grad is not None
        per_filter = grad.flatten(1).norm(dim=1)
        alive = mask & (unit.bn.bias.detach() > 0)
        alive_total += int(alive.sum())
        assert bool((per_filter[alive] > 0).all()), unit.name
    assert alive_total >= 5


def _regrowth(name: str, hard: bool, momentum: float) -> dict[str, float]:
    """Train 3 steps, prune (soft, or hard: BN pair zeroed too), train 10 more; measure the
    pruned filters against the kept ones: kernel norm, post-BN output std, share non-zero."""
    model = real_model(name).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    x = torch.randn(4, 3, 65, 65, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (4, 65, 65), generator=torch.Generator().manual_seed(1))

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(3):  # past timm's zero-initialised last BN, so every filter has momentum
        step()
    SoftFilterPruner(model, 0.4, 0.2).step()
    units = model.prunable_units()
    masks = {u.name: zeroed_mask(u) for u in units}
    if hard:  # the old behaviour, for contrast: kernel and BN affine pair zeroed
        with torch.no_grad():
            for u in units:
                u.bn.weight[masks[u.name]] = 0.0
                u.bn.bias[masks[u.name]] = 0.0
    outputs: dict[str, Tensor] = {}
    for u in units:
        u.bn.register_forward_hook(lambda _m, _i, out, n=u.name: outputs.__setitem__(n, out))
    for _ in range(10):
        step()
    pruned = torch.cat([filter_norms(u)[masks[u.name]] for u in units])
    kept = torch.cat([filter_norms(u)[~masks[u.name]] for u in units])
    std = {u.name: outputs[u.name].detach().std(dim=(0, 2, 3)) for u in units}
    pruned_std = torch.cat([std[u.name][masks[u.name]] for u in units])
    kept_std = torch.cat([std[u.name][~masks[u.name]] for u in units])
    return {
        "norm_ratio": float(pruned.median() / kept.median()),
        "signal_ratio": float(pruned_std.median() / kept_std.median()),
        "back": float((pruned > 0).float().mean()),
        "fraction_left": pruned_fraction(model)["total"],
        "zeroed": float(has_zeroed_filters(model)),
    }


@pytest.mark.parametrize("name", ["deeplabv3plus", "dan"])
def test_pruned_filters_grow_back_under_sgd_momentum(name: str) -> None:
    """Soft: 10 SGD steps (momentum 0.9) bring every pruned filter back; behind BN (scale
    invariant) its output carries a visible fraction of a kept filter's signal. Hard pruning
    (BN zeroed too) leaves them silent. Regrown filters no longer count as pruned."""
    soft = _regrowth(name, hard=False, momentum=0.9)
    hard = _regrowth(name, hard=True, momentum=0.9)
    assert soft["back"] == 1.0
    assert soft["signal_ratio"] > 0.3, soft
    assert soft["norm_ratio"] > 5 * hard["norm_ratio"], (soft, hard)
    assert hard["signal_ratio"] < 0.01, hard
    assert soft["fraction_left"] == 0.0 and soft["zeroed"] == 0.0


def test_pruned_filters_grow_back_under_plain_sgd() -> None:
    """Without momentum the gradient alone regrows the filters whose BN shift is positive
    (ReLU passes it); hard pruning regrows none."""
    soft = _regrowth("deeplabv3plus", hard=False, momentum=0.0)
    hard = _regrowth("deeplabv3plus", hard=True, momentum=0.0)
    assert soft["back"] > 0.2, soft
    assert hard["back"] == 0.0, hard


def test_a_regrown_filter_is_not_counted_as_pruned() -> None:
    model = real_model("dan").eval()
    SoftFilterPruner(model, 0.4, 0.2).step()
    unit = model.prunable_units()[0]
    index = torch.nonzero(zeroed_mask(unit)).flatten()
    with torch.no_grad():
        unit.conv.weight[index[0]] = 1e-3  # one filter grew back
    small = compact(model)
    kept = unit.conv.out_channels - len(index) + 1
    assert small.prunable_units()[0].conv.out_channels == kept
    assert pruned_fraction(model)["total"] < pruned_fraction(compact(model))["total"] + 1


def test_pruned_fraction_per_kind() -> None:
    model = tiny_seg()
    SoftFilterPruner(model, 0.5, 0.0).step()
    fraction = pruned_fraction(model)
    assert fraction["decoder"] == 0.0
    enc = [u for u in model.prunable_units() if u.kind == "encoder"]
    n = sum(u.conv.out_channels for u in enc)
    assert fraction["encoder"] == pytest.approx(sum(u.conv.out_channels // 2 for u in enc) / n)
    assert 0 < fraction["total"] < fraction["encoder"]


# --- compaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "decoder_rate"), [(r, d) for r in RATES for d in (0.0, 0.2, 0.5)])
def test_compact_equals_masked(rate: float, decoder_rate: float) -> None:
    model = tiny_seg()
    SoftFilterPruner(model, rate, decoder_rate).step()
    small = compact(model).eval()
    x = image()
    with torch.no_grad():
        assert max_diff(small(x), model(x)) <= 1e-4
    for big_unit, small_unit in zip(model.prunable_units(), small.prunable_units(), strict=True):
        p = rate if big_unit.kind == "encoder" else decoder_rate
        n = big_unit.conv.out_channels
        assert small_unit.conv.out_channels == n - math.floor(p * n), big_unit.name
        assert small_unit.bn.num_features == small_unit.conv.out_channels
        mean = small_unit.bn.running_mean
        assert mean is not None and mean.shape == (small_unit.conv.out_channels,)
        for consumer in small_unit.consumers:
            assert consumer.conv.weight.shape[1] == consumer.conv.in_channels
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in small.parameters()) < count


def test_compact_leaves_the_original_untouched() -> None:
    model = tiny_seg()
    SoftFilterPruner(model, 0.6, 0.2).step()
    before = state(model)
    small = compact(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.aspp.project.conv.in_channels == 24
    ours = {id(p) for p in model.parameters()}
    assert not ours & {id(p) for p in small.parameters()}


def test_compact_keeps_one_channel_of_a_fully_zeroed_unit() -> None:
    model = tiny_seg()
    unit = next(u for u in model.prunable_units() if u.name == "aspp.1")
    zero_filters(unit, torch.arange(unit.conv.out_channels))
    small = compact(model).eval()
    assert small.aspp.units()[1].conv.out_channels == 1
    assert small.aspp.project.conv.in_channels == 24 - 5
    with torch.no_grad():
        assert max_diff(small(image()), model(image())) <= 1e-4


def test_compact_without_zeroed_filters_is_an_equal_copy() -> None:
    model = tiny_seg()
    small = compact(model)
    assert small is not model
    with torch.no_grad():
        assert torch.equal(small(image()), model(image()))


def test_compact_trained_after_pruning_still_exact() -> None:
    """BN running stats updated on zeroed channels (train-mode forwards) do not break exactness."""
    model = tiny_seg()
    SoftFilterPruner(model, 0.4, 0.2).step()
    model.train()
    with torch.no_grad():
        model(image(seed=5))
    model.eval()
    with torch.no_grad():
        assert max_diff(compact(model)(image()), model(image())) <= 1e-4


def test_explicit_units_on_a_plain_sequential() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 10, 3, padding=1), nn.BatchNorm2d(10), nn.ReLU(), nn.Conv2d(10, 4, 1)
    ).eval()
    units = [PrunableUnit("0", net[0], net[1], (Consumer(net[3]),), "decoder")]  # type: ignore[arg-type]
    assert SoftFilterPruner(net, 0.0, 0.3, units=units).step()["decoder"] == 3
    small = compact(net, units=units)
    conv, consumer = small[0], small[3]
    assert isinstance(conv, nn.Conv2d) and isinstance(consumer, nn.Conv2d)
    assert conv.out_channels == 7 and conv.bias is not None and conv.bias.shape == (7,)
    assert consumer.in_channels == 7
    with torch.no_grad():
        assert max_diff(small(image()), net(image())) <= 1e-4


def test_overlapping_consumer_ranges_are_refused() -> None:
    """Stale offsets (here aspp.1 read at 0, over aspp.0) raise instead of corrupting weights."""
    model = tiny_seg()
    units = [
        PrunableUnit(u.name, u.conv, u.bn, (Consumer(model.aspp.project.conv, 0),), u.kind)
        if u.name == "aspp.1"
        else u
        for u in model.prunable_units()
    ]
    with pytest.raises(ValueError, match=r"aspp\.\d.*stale"):
        compact(model, units=units)


def test_prune_for_counting_depends_only_on_counts() -> None:
    first, second = tiny_seg(seed=0), tiny_seg(seed=7)
    before = state(first)
    a = prune_for_counting(first, 0.4, 0.2)
    b = prune_for_counting(second, 0.4, 0.2)
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    assert all(torch.equal(before[k], v) for k, v in first.state_dict().items())
    assert pruned_fraction(first)["total"] == 0.0
    pruned = tiny_seg(seed=7)
    SoftFilterPruner(pruned, 0.4, 0.2).step()
    with torch.no_grad():
        assert max_diff(b(image()), pruned(image())) <= 1e-4


# --- the real models ----------------------------------------------------------------------------

MODELS = ("deeplabv3plus", "dan")


def real_model(name: str) -> SegmentationModel:
    torch.manual_seed(0)
    return build_model(name, backbone="resnet18", num_classes=5)


@pytest.mark.parametrize("name", MODELS)
def test_real_model_train_step_then_compact_equals_masked(name: str) -> None:
    model = real_model(name).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(2, 3, 65, 65, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (2, 65, 65), generator=torch.Generator().manual_seed(1))
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    counts = SoftFilterPruner(model, 0.4, 0.2).step()
    units = model.prunable_units()
    assert counts["total"] == sum(
        math.floor((0.4 if u.kind == "encoder" else 0.2) * u.conv.out_channels) for u in units
    )
    model.eval()
    small = compact(model).eval()
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for lrg in (None, 9, 5, 3):
            model.lrg = small.lrg = lrg
            out = small(x)
            assert out.shape == (2, 5, 65, 65)
            assert max_diff(out, model(x)) <= 1e-4, lrg


@pytest.mark.parametrize("name", MODELS)
def test_real_model_compacts_twice(name: str) -> None:
    """A compacted model's own units (concat offsets from conv widths) compact it again."""
    model = real_model(name).eval()
    SoftFilterPruner(model, 0.4, 0.2).step()
    small = compact(model)
    SoftFilterPruner(small, 0.4, 0.2).step()
    smaller = compact(small).eval()
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_diff(smaller(x), small.eval()(x)) <= 1e-4


def test_a_backbone_without_prunable_blocks_is_warned_about() -> None:
    from trainables.models import build_model

    plain = build_model("dan", backbone="mobilenetv3_small_050", num_classes=3)
    with pytest.warns(UserWarning, match="prunes the ASPP branches only"):
        SoftFilterPruner(plain, 0.2, 0.2)
    residual = build_model("dan", backbone="resnet18", num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SoftFilterPruner(residual, 0.2, 0.2)  # residual blocks: no warning


def test_fold_into_a_padded_consumer_is_exact_at_the_border() -> None:
    """A removed channel's constant c through a zero-padded 3x3 conv is c * sum(W) inside the
    image but a partial sum on the border: a bias alone is wrong there, the fold map is not."""
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1)
    ).eval()
    with torch.no_grad():
        net[1].bias.fill_(0.7)  # a positive shift: pruned channels emit relu(0.7) = 0.7
    units = [PrunableUnit("0", net[0], net[1], (Consumer(net[3]),), "decoder")]  # type: ignore[arg-type]
    SoftFilterPruner(net, 0.0, 0.5, units=units).step()
    removed = zeroed_mask(units[0])
    small = compact(net, units=units)
    assert isinstance(small[3], FoldedConv2d) and small[3].in_channels == 3
    x = image()
    with torch.no_grad():
        masked = net(x)
        assert max_diff(small(x), masked) <= 1e-5
        # by hand: drop the inputs, add c * sum(W[:, removed]) as a plain bias
        kept_net = compact(net, units=units)
        plain = nn.Conv2d(3, 4, 3, padding=1)
        plain.weight.copy_(net[3].weight[:, ~removed])
        shift = 0.7 * net[3].weight[:, removed].sum(dim=(1, 2, 3))
        plain.bias.copy_(net[3].bias + shift)
        bias_only = plain(kept_net[2](kept_net[1](kept_net[0](x))))
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert max_diff(bias_only[inner], masked[inner]) <= 1e-5
    assert max_diff(bias_only, masked) > 1e-2  # the border differs without the fold map


def test_compact_leaves_the_global_rng_alone() -> None:
    """Folding swaps in new conv modules; building them must not draw random numbers."""
    model = tiny_seg()
    SoftFilterPruner(model, 0.5, 0.5).step()
    before = torch.get_rng_state()
    small = compact(model)
    assert any(isinstance(m, FoldedConv2d) for m in small.modules())
    assert torch.equal(before, torch.get_rng_state())
