"""Spectral gradient (SpG): each op checked against an independent computation, the CLI end to end.

Independent references: the DFT of the conv kernel (numpy), the DFT of the ReLU mask (numpy),
the up-sampling sum rule, the project's band profile of the CE (``ce_spectrum``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from orchestrator.cli import main
from trainables.errors import InputError
from trainables.spectral import ce_spectrum
from trainables.spg import (
    OPS,
    build_decoder_model,
    builtin_op,
    ce_frequency_map,
    conv_kernel,
    decoder_spg,
    default_frequencies,
    op_spg,
    random_decoder_inputs,
    spg,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "test_resnet"  # timm's registered test ResNet, as in test_models.py
SUMMARY_KEYS = {"op", "nu_i", "peak_nu_j", "delta_fraction"}


@pytest.mark.parametrize("size", [12, 13])
def test_circular_conv_is_exact_delta_of_kernel_dft(size: int) -> None:
    channels, seed = 3, 4
    nus = [(0, 0), (3, 3), (5, -2), (-(size // 2), 1)]  # the last row is Nyquist for even M
    maps = spg("conv", size, nus, channels=channels, seed=seed)
    kernel = conv_kernel(channels, seed).numpy()
    dft = np.abs(np.fft.fft2(kernel, s=(size, size)))  # (C, C, M, M): |k_oc(nu)| by numpy
    for m, nu in zip(maps, nus, strict=True):
        assert m.delta_fraction == pytest.approx(1.0, abs=1e-6)
        assert m.peak_nu_j == nu
        iy, ix = nu[0] % size, nu[1] % size
        assert float(m.magnitude[iy, ix]) == pytest.approx(dft[:, :, iy, ix].mean(), rel=1e-9)
        off = m.magnitude.clone()
        off[iy, ix] = 0.0
        assert float(off.max()) < 1e-12  # nothing elsewhere, not even at the mirror -nu_i


def test_relu_map_is_dft_of_its_mask() -> None:
    size = 16
    x = torch.randn(1, size, size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    nus = [*default_frequencies(size), (-5, 2)]
    maps = op_spg(builtin_op("relu"), x, nus)
    mask_dft = np.abs(np.fft.fft2((x[0] > 0).double().numpy()))
    grid = np.arange(size)
    for m, nu in zip(maps, nus, strict=True):
        assert m.peak_nu_j == nu
        # d y(nu_i)/d x(nu_j) = mask_hat(nu_i - nu_j) / M^2; by Parseval the share at nu_i is
        # the fraction of active inputs
        expected = mask_dft[np.subtract.outer(nu[0], grid) % size][:, (nu[1] - grid) % size]
        np.testing.assert_allclose(m.magnitude.numpy(), expected / size**2, atol=1e-12)
        assert m.delta_fraction == pytest.approx(float((x > 0).double().mean()), abs=1e-9)


def test_upsample_peaks_at_the_same_input_frequency() -> None:
    size = 16
    nus = [(0, 0), (4, 4), (7, -3), (-7, 7), (2, 0)]  # |nu| < M/2: one input frequency each
    maps = spg("upsample", size, nus, channels=2, seed=1)
    for m, nu in zip(maps, nus, strict=True):
        assert m.size == size  # nu_j on the input grid, nu_i on the 2M output grid
        assert m.peak_nu_j == nu
        assert m.delta_fraction > 0.9
    # bilinear x2 keeps the mean on 4x the pixels: y(0) = 4 x(0) exactly
    assert float(maps[0].magnitude[0, 0]) == pytest.approx(4.0, rel=1e-12)
    assert maps[0].delta_fraction == pytest.approx(1.0, abs=1e-9)


def test_ce_frequency_map_sums_to_the_project_band_profile() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 15, 15, generator=generator)
    labels = torch.randint(0, 4, (2, 15, 15), generator=generator)
    labels[0, :3] = 255
    lce = ce_frequency_map(logits, labels)
    freq = (torch.fft.fftfreq(15) * 15).round().abs().long()
    band = torch.maximum(freq[:, None], freq[None, :])
    profile = torch.zeros(8, dtype=torch.float64).index_add_(0, band.flatten(), lce.flatten())
    reference = ce_spectrum(logits, labels, precision="double")
    torch.testing.assert_close(profile, reference.band_profile, rtol=1e-9, atol=1e-12)
    ce = F.cross_entropy(logits.double(), labels, ignore_index=255)
    assert float(lce.sum()) == pytest.approx(float(ce), rel=1e-9)


def test_decoder_spg_peaks_at_nu_i_and_is_symmetric() -> None:
    model = build_decoder_model("dan", TINY, num_classes=3, seed=0)
    maps = decoder_spg(model, random_decoder_inputs(model, 8, seed=0))
    for m, nu in zip(maps, default_frequencies(8), strict=True):
        assert m.nu_i == nu and m.peak_nu_j == nu
        # L_ce(nu_i) is real: the same magnitude at x(nu_i) and x(-nu_i)
        mirror = (-torch.arange(8)) % 8
        torch.testing.assert_close(m.magnitude, m.magnitude[mirror][:, mirror])
        assert 0.0 < m.delta_fraction <= 1.0


def test_checkpoint_weights_are_loaded(tmp_path: Path) -> None:
    from trainables.checkpoint import save_checkpoint
    from trainables.config import TrialConfig
    from trainables.trial_setup import build_network, build_optimizer

    cfg = TrialConfig(model="deeplabv3plus", backbone=TINY, num_classes=3, input_size=33)
    torch.manual_seed(5)
    trained = build_network(cfg, 3, torch.device("cpu"))
    optimizer, scheduler = build_optimizer(trained, cfg, 1)
    save_checkpoint(tmp_path, trained, optimizer, scheduler, cfg, 0)
    loaded = build_decoder_model(checkpoint=tmp_path)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    with pytest.raises(InputError, match="model 'dan' disagrees with checkpoint"):
        build_decoder_model("dan", checkpoint=tmp_path)
    out = tmp_path / "spg"
    assert main(["spg", "--op", "decoder", "--size", "5", "--checkpoint-dir", str(tmp_path),
                 "--out", str(out)]) == 0  # fmt: skip
    assert (out / "spg_summary.json").is_file()


def test_cli_writes_csv_png_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["spg", "--op", "conv", "--op", "upsample", "--op", "decoder", "--size", "8",
            "--backbone", TINY, "--num-classes", "3", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    for name in ("spg.csv", "spg.png", "spg_summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "spg_summary.json").read_text())
    assert summary == printed
    nus = default_frequencies(8)
    assert [(r["op"], tuple(r["nu_i"])) for r in summary] == [
        (op, nu) for op in ("conv", "upsample", "decoder") for nu in nus
    ]
    for record in summary:
        assert set(record) == SUMMARY_KEYS
        assert record["peak_nu_j"] == record["nu_i"]
        assert isinstance(record["delta_fraction"], float) and 0 < record["delta_fraction"] <= 1
    assert all(r["delta_fraction"] == pytest.approx(1.0) for r in summary if r["op"] == "conv")
    with (out / "spg.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["op", "nu_i_y", "nu_i_x", "nu_j_y", "nu_j_x", "magnitude"]
    assert len(rows) == 3 * len(nus) * 8 * 8
    assert (rows[0]["nu_j_y"], rows[0]["nu_j_x"]) == ("-4", "-4")  # ascending, 0 in the middle


def test_cli_dataset_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["spg", "--op", "decoder", "--size", "5", "--model", "dan", "--backbone", TINY,
            "--dataset", "synthetic-smooth", "--num-classes", "3", "--nu", "1,1", "--nu=-2,0",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "decoder" in text and "-2,0" in text
    summary = json.loads((tmp_path / "spg_summary.json").read_text())
    assert [r["nu_i"] for r in summary] == [[1, 1], [-2, 0]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--op", "fft"], "unknown op 'fft'; choose from: " + ", ".join(OPS)),
        (["--op", "conv", "--size", "3"], "--size 3 must be in [4, 256]"),
        (["--op", "conv", "--nu", "4,0"], "4,0 is outside the 8x8 grid"),
        (["--op", "conv", "--nu", "1;2"], "--nu '1;2' is not Y,X"),
        (["--op", "decoder", "--model", "unet"], "unknown model 'unet'"),
        (["--op", "decoder", "--backbone", "resnt18"], "unknown backbone 'resnt18'"),
        (["--op", "relu", "--dataset", "voc"], "--dataset only applies to --op decoder"),
        (["--op", "conv", "--images", "5"], "--images only applies to --op decoder"),
        (["--op", "conv", "--split", "train"], "--split only applies to --op decoder"),
        (["--op", "decoder", "--checkpoint-dir", "/nonexistent/x"], "does not exist"),
        (["--op", "decoder", "--num-classes", "1"], "--num-classes 1 must be >= 2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["spg", "--size", "8", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["spg", "--op", "conv", "--size", "8", "--out", str(target)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
