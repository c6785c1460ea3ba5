"""FLOPs counting: conventions, encoder/decoder split, LRG scaling, pruning, CLI, paper targets."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from orchestrator.cli import main
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.flops import FlopsReport, architecture_flops, count_flops, grid_flops, measure
from trainables.models import SegmentationModel, build_model
from trainables.table2 import PAPER_TABLE2, TABLE2_LRGS, TABLE2_SETUPS, Table2Cell, reproduce_table2

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "test_resnet"


def tiny(name: str = "deeplabv3plus", **kw: object) -> SegmentationModel:
    torch.manual_seed(0)
    return build_model(name, TINY, num_classes=5, **kw)  # type: ignore[arg-type]


def decoder_conv_macs_per_pixel(model: SegmentationModel) -> int:
    """Multiply-adds per output pixel of the DeepLab decoder's convs (all run on one grid)."""
    convs = [m for d in model.decoder_modules() for m in d.modules() if isinstance(m, nn.Conv2d)]
    return sum(c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1] for c in convs)


@pytest.mark.parametrize("name", ["deeplabv3plus", "dan"])
def test_report_is_consistent(name: str) -> None:
    model = tiny(name)
    report = count_flops(model, 65)
    assert report.gflops == pytest.approx(2 * report.gmacs)
    assert report.encoder_gflops == pytest.approx(2 * report.encoder_gmacs)
    assert report.encoder_gmacs + report.decoder_gmacs == pytest.approx(report.gmacs)
    assert report.encoder_gmacs > 0 and report.decoder_gmacs > 0
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.encoder_params + report.decoder_params == report.params
    assert set(report.as_dict()) == {
        "gmacs",
        "gflops",
        "encoder_gmacs",
        "decoder_gmacs",
        "encoder_gflops",
        "decoder_gflops",
        "params",
        "encoder_params",
        "decoder_params",
    }


def test_counting_keeps_training_mode() -> None:
    model = tiny().train()
    count_flops(model, 64)
    assert model.training


def test_deeplab_decoder_convs_scale_as_grid_squared() -> None:
    """The decoder's conv multiply-adds are exactly (MACs per pixel) x s^2 at every LRG s."""
    from trainables.flops import _fvcore_analysis

    model = tiny().eval()
    per_pixel = decoder_conv_macs_per_pixel(model)
    image = torch.zeros(1, 3, 65, 65)
    for s in (17, 13, 9, 5):
        model.lrg = s
        with torch.no_grad():
            convs = _fvcore_analysis(model, image).by_module_and_operator()["decoder"]["conv"]
        assert convs == per_pixel * s * s


@pytest.mark.parametrize("name", ["deeplabv3plus", "dan"])
def test_decoder_flops_fall_with_lrg_encoder_constant(name: str) -> None:
    model = tiny(name)
    reports = []
    for s in (None, 13, 9, 5):
        model.lrg = s
        reports.append(count_flops(model, 65))
    decoder = [r.decoder_gmacs for r in reports]
    assert decoder == sorted(decoder, reverse=True) and len(set(decoder)) == 4
    assert len({r.encoder_gmacs for r in reports}) == 1
    assert len({r.params for r in reports}) == 1


def test_conv_counts_agree_with_torch_flop_counter() -> None:
    """fvcore's conv multiply-adds x 2 == torch's FlopCounterMode conv FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from trainables.flops import _fvcore_analysis

    for name, lrg in (("deeplabv3plus", None), ("dan", 7)):
        model = tiny(name, lrg=lrg).eval()
        image = torch.zeros(1, 3, 64, 64)
        with torch.no_grad():
            fv_conv = _fvcore_analysis(model, image).by_operator()["conv"]
            counter = FlopCounterMode(display=False)
            with counter:
                model(image)
        torch_conv = sum(
            n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)
        )
        assert torch_conv == 2 * fv_conv > 0


def test_architecture_flops_cached_and_leaves_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first = architecture_flops("dan", TINY, 65, 5, 9)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert architecture_flops("dan", TINY, 65, 5, 9) is first
    model = tiny("dan", lrg=9)
    assert measure(model, 65) == first  # same architecture, weights do not matter


def test_pruned_model_counted_compact() -> None:
    from trainables.pruning import SoftFilterPruner

    model = tiny("deeplabv3plus")
    dense = count_flops(model, 65)
    SoftFilterPruner(model, 0.5, 0.5).step()
    pruned = count_flops(model, 65)
    assert pruned.gmacs < 0.7 * dense.gmacs
    assert pruned.params < dense.params
    assert pruned == architecture_flops("deeplabv3plus", TINY, 65, 5, None, 0.5, 0.5)


def test_prune_rates_shrink_encoder_and_decoder_separately() -> None:
    base = architecture_flops("dan", TINY, 65, 5)
    enc = architecture_flops("dan", TINY, 65, 5, None, 0.4, 0.0)
    dec = architecture_flops("dan", TINY, 65, 5, None, 0.0, 0.4)
    assert enc.encoder_gmacs < base.encoder_gmacs and enc.decoder_gmacs <= base.decoder_gmacs
    assert dec.decoder_gmacs < base.decoder_gmacs and dec.encoder_gmacs == base.encoder_gmacs


# --- CLI ----------------------------------------------------------------------------------


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["flops", "--model", "dan", "--backbone", TINY, "--input-size", "65"]
    assert main([*argv, "--num-classes", "5", "--lrg", "9", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = architecture_flops("dan", TINY, 65, 5, 9).as_dict()
    keys = {"gflops", "gmacs", "encoder_gflops", "decoder_gflops", "params", "encoder_params"}
    assert keys | {"decoder_params"} <= set(out)
    assert out == expected


def test_cli_output_stride(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["flops", "--backbone", TINY, "--input-size", "64", "--num-classes", "3", "--json"]
    assert main([*argv, "--output-stride", "32"]) == 0
    os32 = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    os16 = json.loads(capsys.readouterr().out)
    assert os32["encoder_gmacs"] < os16["encoder_gmacs"]
    assert os32["decoder_gmacs"] == pytest.approx(os16["decoder_gmacs"], rel=0.01)
    assert main([*argv, "--output-stride", "4"]) == 2


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--backbone", TINY, "--input-size", "64", "--num-classes", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["part", "gflops", "gmacs", "params"]
    assert [line.split()[0] for line in lines[2:]] == ["encoder", "decoder", "total"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "unet"], "unknown model 'unet'; choose from: deeplabv3plus, dan"),
        (["--backbone", "resnt18"], "unknown backbone 'resnt18'"),
        (["--lrg", "18"], "lrg 18 is outside [3, 17]"),
        (["--lrg", "2"], "lrg 2 is outside [3, 17]"),
        (["--prune-rate", "0.95"], "prune_rate"),
        (["--decoder-prune-rate", "-0.1"], "decoder_prune_rate"),
        (["--input-size", "8"], "input size 8"),
        (["--output-stride", "0"], "output_stride 0 not supported"),  # was taken as 16
    ],
)
def test_cli_bad_input_exits_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["flops", "--backbone", TINY, "--input-size", "65", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --- ResNet-101 at 513 x 513, 21 classes (paper Table 2 and section A.1) --------------------


@pytest.fixture(scope="module")
def r101() -> dict[str, FlopsReport]:
    """Every ResNet-101 report the targets need (each architecture built once)."""
    return {
        "deeplab": architecture_flops("deeplabv3plus", "resnet101", 513, 21),
        "deeplab_65": architecture_flops("deeplabv3plus", "resnet101", 513, 21, 65),
        "dan": architecture_flops("dan", "resnet101", 513, 21),
    }


@pytest.mark.slow
def test_r101_deeplab_targets(r101: dict[str, FlopsReport]) -> None:
    deeplab = r101["deeplab"]
    assert deeplab.decoder_gflops == pytest.approx(43.4, rel=0.03)
    assert deeplab.decoder_params == pytest.approx(1.3e6, rel=0.05)
    assert deeplab.encoder_params == pytest.approx(60.1e6, rel=0.05)
    # about s^2: LRG 65 costs about (65/129)^2 of the native decoder
    ratio = r101["deeplab_65"].decoder_gflops / deeplab.decoder_gflops
    assert ratio == pytest.approx((65 / 129) ** 2, rel=0.05)
    assert r101["deeplab_65"].encoder_gflops == deeplab.encoder_gflops


@pytest.mark.slow
def test_r101_dan_targets(r101: dict[str, FlopsReport]) -> None:
    dan = r101["dan"]
    assert dan.decoder_gflops == pytest.approx(11.1, rel=0.05)
    assert dan.decoder_params == pytest.approx(0.4e6, rel=0.1)
    assert dan.encoder_gflops == r101["deeplab"].encoder_gflops


@pytest.mark.slow
def test_r101_pruning_cuts_about_a_quarter(r101: dict[str, FlopsReport]) -> None:
    pruned = architecture_flops("deeplabv3plus", "resnet101", 513, 21, None, 0.2, 0.2)
    cut = 1 - pruned.gflops / r101["deeplab"].gflops  # paper: 1 - 100/139 = 0.28
    assert 0.2 < cut < 0.35


@pytest.mark.slow
def test_r101_output_stride_32_matches_paper_table_2() -> None:
    """The paper's 139 GFLOPs (DeepLab v3+, LRG 129) is the encoder at output stride 32."""
    report = architecture_flops("deeplabv3plus", "resnet101", 513, 21, output_stride=32)
    assert report.gflops == pytest.approx(139, rel=0.03)
    assert report.encoder_gflops == pytest.approx(95.6, rel=0.03)


# --- FLOPs conventions and the paper's Table 2 ------------------------------------------------


@pytest.fixture(scope="module")
def table2() -> list[Table2Cell]:
    """All 56 cells of Table 2 counted under the paper convention (cached for the CLI test)."""
    return reproduce_table2("paper")


@pytest.mark.slow
def test_paper_convention_reproduces_every_cell_of_table_2(table2: list[Table2Cell]) -> None:
    """The published figures (an independent source): unpruned rows within 3 %, pruned 5 %."""
    assert len(table2) == 56
    assert {(c.model, c.prune_rate, c.lrg) for c in table2} == {
        (m, r, s) for m in PAPER_TABLE2 for r, _ in TABLE2_SETUPS for s in TABLE2_LRGS
    }
    for cell in table2:
        bound = 0.03 if cell.prune_rate == 0 else 0.05
        assert abs(cell.error) <= bound, cell


@pytest.mark.slow
def test_cli_table2_prints_both_tables(
    table2: list[Table2Cell], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["flops", "--table2", "--convention", "paper", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [(r["model"], r["lrg"], r["gflops"]) for r in rows] == [
        (c.model, c.lrg, c.gflops) for c in table2
    ]
    assert "56/56" in err
    assert main(["flops", "--table2", "--convention", "paper"]) == 0
    text = capsys.readouterr().out
    assert "deeplabv3plus: GFLOPs ours / paper" in text and "dan: GFLOPs ours / paper" in text
    assert "/139" in text and "/27" in text


@pytest.mark.slow
def test_compact_convention_is_the_trained_stride_and_counts_more() -> None:
    """Default: the trained output stride 16 (encoder ~142.5); pruned, the compact count keeps
    the residual-stream convs whole, so it is above the paper's count."""
    compact = architecture_flops("deeplabv3plus", "resnet101", 513, 21)
    assert compact.encoder_gflops == pytest.approx(142.5, rel=0.03)
    pruned_compact = architecture_flops(
        "deeplabv3plus", "resnet101", 513, 21, 65, 0.4, 0.2, output_stride=32
    )
    pruned_paper = architecture_flops(
        "deeplabv3plus", "resnet101", 513, 21, 65, 0.4, 0.2, convention="paper"
    )
    assert pruned_paper.decoder_gflops == pytest.approx(pruned_compact.decoder_gflops)
    assert pruned_paper.encoder_gflops < 0.95 * pruned_compact.encoder_gflops
    assert pruned_paper.params == pruned_compact.params


def test_paper_convention_skips_the_block_outputs_by_hand() -> None:
    """On a tiny ResNet: the paper count equals the compact count (stride 32) minus, for every
    block's last conv, floor(p n) / n of its multiply-adds counted by hand (in x out x k^2 x HW)."""
    rate = 0.5
    compact = architecture_flops("dan", "resnet18", 65, 3, None, rate, 0.0, output_stride=32)
    paper = architecture_flops("dan", "resnet18", 65, 3, None, rate, 0.0, convention="paper")
    model = build_model("dan", backbone="resnet18", num_classes=3, output_stride=32)
    from trainables.compaction import FoldedConv2d, prune_for_counting

    small = prune_for_counting(model, rate, 0.0)
    assert all(isinstance(conv, FoldedConv2d) for conv, _bn in small.encoder.block_outputs())
    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [
        conv.register_forward_hook(
            lambda m, _i, out: sizes.__setitem__(m, (out.shape[-2], out.shape[-1]))
        )
        for conv, _bn in small.encoder.block_outputs()
    ]
    with torch.no_grad():
        small.eval()(torch.zeros(1, 3, 65, 65))
    for hook in hooks:
        hook.remove()
    saved = 0.0
    for conv, _bn in small.encoder.block_outputs():
        h, w = sizes[conv]
        n = conv.out_channels
        # the conv, plus its one-channel fold map (it consumes conv1's pruned channels: 3x3,
        # padded), and its BN at 2 per element; each loses floor(p n) / n
        k = conv.kernel_size[0] * conv.kernel_size[1]
        macs = (conv.in_channels + 1) * n * k * h * w
        saved += macs * (n // 2) / n + 2 * h * w * (n // 2)
    assert len(sizes) == 8  # resnet18: 8 basic blocks
    assert compact.gmacs - paper.gmacs == pytest.approx(saved / 1e9, rel=1e-6)
    assert paper.decoder_gmacs == pytest.approx(compact.decoder_gmacs)


def test_bad_conventions_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--convention", "honest"]) == 2
    assert (
        "unknown FLOPs convention 'honest'; choose from compact, paper" in capsys.readouterr().err
    )
    assert main(["flops", "--convention", "paper", "--output-stride", "16"]) == 2
    assert "conflicts with FLOPs convention 'paper'" in capsys.readouterr().err
    assert main(["flops", "--table2", "--convention", "paper", "--lrg", "65"]) == 2
    err = capsys.readouterr().err
    assert "--table2 counts the paper's own architectures; drop --lrg" in err
    assert err.count("\n") == 1
    with pytest.raises(InputError, match="flops_convention='x'"):
        TrialConfig(flops_convention="x")  # type: ignore[arg-type]


def test_new_convention_field_leaves_earlier_keys_alone() -> None:
    """Keys recorded before the field existed (value from the previous release) stay valid."""
    assert TrialConfig().key == "83fa4688536d15e3"
    assert TrialConfig(flops_convention="paper").key != TrialConfig().key


@pytest.mark.parametrize("name", ["deeplabv3plus", "dan"])
@pytest.mark.parametrize(("lrg", "rate", "decoder_rate"), [(None, 0.0, 0.0), (5, 0.4, 0.2)])
def test_split_count_equals_one_trace_of_the_whole_network(
    name: str, lrg: int | None, rate: float, decoder_rate: float
) -> None:
    """architecture_flops traces encoder and decoder apart; the sum is one whole-network trace."""
    from trainables.compaction import prune_for_counting

    split = architecture_flops(name, "resnet18", 65, 5, lrg, rate, decoder_rate)
    torch.manual_seed(0)
    net = build_model(name, backbone="resnet18", num_classes=5)
    if rate:
        net = prune_for_counting(net, rate, decoder_rate)
    net.lrg = lrg
    whole = measure(net, 65)
    assert split == whole


def test_grid_counts_fill_the_cache_single_counts_read() -> None:
    """A grid count builds the network once; single counts of its grids then come from it."""
    reports = grid_flops("deeplabv3plus", TINY, 65, 5, [None, 9, 5], 0.4, 0.2)
    for lrg in (None, 9, 5):
        assert architecture_flops("deeplabv3plus", TINY, 65, 5, lrg, 0.4, 0.2) is reports[lrg]
    assert reports[9].decoder_gmacs < reports[None].decoder_gmacs
    assert reports[9].encoder_gmacs == reports[None].encoder_gmacs
