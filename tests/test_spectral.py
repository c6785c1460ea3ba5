"""The spectral CE decomposition: Parseval, band bookkeeping, R_ce, accumulation, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from trainables import spectral
from trainables.errors import InputError
from trainables.spectral import (
    CESpectrum,
    LabelSpectrumAccumulator,
    SpectrumAccumulator,
    band_of_lrg,
    ce_spectrum,
    label_spectrum,
    lrg_of_band,
    paper_bands,
)

IGNORE = 255
SIZES = [(17, 17), (16, 16), (20, 33), (33, 20)]


def make_batch(
    batch: int, classes: int, height: int, width: int, seed: int = 0, ignore: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float32 logits and labels with a fraction ``ignore`` of ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, height, width, generator=g) * 2.0
    labels = torch.randint(0, classes, (batch, height, width), generator=g)
    labels[torch.rand(batch, height, width, generator=g) < ignore] = IGNORE
    return logits, labels


def reference_spectrum(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Straight from the definition: full complex fft2 in float64, one loop over frequencies."""
    y = logits.double()
    yhat = torch.logsumexp(y, dim=1, keepdim=True) - y
    batch, classes, height, width = y.shape
    valid = labels != IGNORE
    onehot = F.one_hot(labels.masked_fill(~valid, 0), classes).permute(0, 3, 1, 2).double()
    onehot = onehot * valid.unsqueeze(1)
    b, yh = torch.fft.fft2(onehot), torch.fft.fft2(yhat)
    per_nu = (b.conj() * yh).real.sum((0, 1))
    nu_y = (torch.fft.fftfreq(height) * height).round().abs().long()
    nu_x = (torch.fft.fftfreq(width) * width).round().abs().long()
    band = torch.maximum(nu_y[:, None], nu_x[None, :]).flatten()
    bands = max(height, width) // 2 + 1
    count = torch.zeros(bands, dtype=torch.float64).index_add_(
        0, band, torch.ones(band.numel(), dtype=torch.float64)
    )

    def band_sum(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(bands, dtype=torch.float64).index_add_(0, band, values.flatten())

    n_valid = int(valid.sum())
    return {
        "profile": band_sum(per_nu) / (n_valid * height * width),
        "label": band_sum(b.abs().sum((0, 1))) / (count * batch * classes),
        "pred": band_sum(yh.abs().sum((0, 1))) / (count * batch * classes),
        "count": count,
    }


# --------------------------------------------------------------------------- Parseval


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_parseval_matches_cross_entropy(height: int, width: int) -> None:
    logits, labels = make_batch(2, 5, height, width, seed=height * 100 + width)
    spectrum = ce_spectrum(logits, labels)
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE).item()
    assert spectrum.precision == "single"
    assert abs(spectrum.band_profile.sum().item() - expected) / expected <= 1e-6
    assert abs(spectrum.total - expected) / expected <= 1e-6
    assert spectrum.n_valid == int((labels != IGNORE).sum())
    assert spectrum.band_profile.dtype == torch.float64
    assert spectrum.band_profile.numel() == max(height, width) // 2 + 1


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_matches_full_fft_definition(height: int, width: int) -> None:
    """rfft2 + Hermitian weights give the per-band sums of the full complex spectrum."""
    logits, labels = make_batch(2, 4, height, width, seed=7)
    spectrum = ce_spectrum(logits, labels, precision="double")
    ref = reference_spectrum(logits, labels)
    torch.testing.assert_close(spectrum.band_profile, ref["profile"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(spectrum.label_magnitude, ref["label"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(spectrum.pred_magnitude, ref["pred"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(spectrum.band_counts, ref["count"])
    assert spectrum.band_counts.sum().item() == height * width


def test_classes_absent_from_the_labels_match_the_definition() -> None:
    """Label FFTs of absent classes are skipped (their b is 0): the spectrum, both magnitude
    profiles included, still equals the full definition, per chunk of images too."""
    logits, labels = make_batch(3, 6, 20, 24, seed=11)
    labels[0] = labels[0] % 2  # image 0: classes 0 and 1 only
    labels[1][labels[1] != IGNORE] = 5  # image 1: class 5 only
    labels[2] = IGNORE  # image 2: nothing labelled
    spectrum = ce_spectrum(logits, labels, precision="double")
    ref = reference_spectrum(logits, labels)
    torch.testing.assert_close(spectrum.band_profile, ref["profile"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(spectrum.label_magnitude, ref["label"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(spectrum.pred_magnitude, ref["pred"], rtol=1e-9, atol=1e-12)


def test_single_precision_close_to_definition() -> None:
    logits, labels = make_batch(2, 6, 33, 20, seed=3)
    single = ce_spectrum(logits, labels, precision="single")
    ref = reference_spectrum(logits, labels)
    scale = ref["profile"].abs().max().item()
    assert (single.band_profile - ref["profile"]).abs().max().item() <= 1e-6 * scale
    torch.testing.assert_close(single.label_magnitude, ref["label"], rtol=1e-5, atol=1e-6)


def test_confident_logits_switch_to_double_and_keep_parseval() -> None:
    """Confident predictions: small CE from large spectral terms; auto picks float64 FFTs."""
    logits, labels = make_batch(2, 8, 33, 33, seed=11, ignore=0.05)
    onehot = F.one_hot(labels.clamp(max=7), 8).permute(0, 3, 1, 2).float()
    logits = logits + 12.0 * onehot + 40.0
    spectrum = ce_spectrum(logits, labels)
    expected = F.cross_entropy(logits.double(), labels, ignore_index=IGNORE).item()
    assert spectrum.precision == "double"
    assert abs(spectrum.band_profile.sum().item() - expected) / expected <= 1e-6
    # yhat is formed in float32 (exact to its last bits, see the next test), its FFTs run in float64
    assert abs(spectrum.total - expected) / expected <= 1e-7
    # every band as the all-float64 computation has it, to 1e-8 of the profile's scale (the
    # bands are ~5000x the CE here: large spectral terms whose sum is small)
    reference = ce_spectrum(logits, labels, precision="double")
    scale = reference.band_profile.abs().max()
    assert (spectrum.band_profile - reference.band_profile).abs().max() <= 1e-8 * scale


def test_float32_yhat_keeps_a_confident_pixels_small_ce() -> None:
    """A confident pixel's CE (~1e-8 here) is log(1 + tiny): in float32, log of the rounded sum
    is log(1) = 0; log1p of the other classes' exp keeps it to float32's precision."""
    logits, labels = make_batch(2, 8, 16, 16, seed=21, ignore=0.0)
    onehot = F.one_hot(labels, 8).permute(0, 3, 1, 2).float()
    logits = logits * 0.25 + 20.0 * onehot
    yhat = spectral.ce._neg_log_softmax(logits, torch.float32)
    exact = torch.logsumexp(logits.double(), 1, keepdim=True) - logits.double()
    at_label = labels.unsqueeze(1)
    small = exact.gather(1, at_label)
    assert small.max() < 1e-7  # the case this is about: CE below float32's 1.2e-7 of 1
    plain = torch.logsumexp(logits, 1, keepdim=True) - logits  # float32 throughout
    assert (plain.gather(1, at_label).double() - small).abs().max() >= 0.5 * small.min()
    error = (yhat.gather(1, at_label).double() - small).abs() / small
    assert error.max() <= 1e-6


def test_saturated_softmax_keeps_parseval() -> None:
    """Huge logit spreads (random-init networks): exp() underflows for most classes."""
    logits, labels = make_batch(2, 6, 20, 33, seed=15)
    logits = logits * 800.0
    spectrum = ce_spectrum(logits, labels)
    expected = F.cross_entropy(logits.double(), labels, ignore_index=IGNORE).item()
    assert abs(spectrum.band_profile.sum().item() - expected) / expected <= 1e-6
    assert abs(spectrum.total - expected) / expected <= 1e-6


def test_chunked_computation_matches_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image chunks and class groups (small limits here) give the one-pass result."""
    logits, labels = make_batch(3, 5, 20, 33, seed=13)
    whole = ce_spectrum(logits, labels, precision="double")
    monkeypatch.setattr(spectral.ce, "_CHUNK_ELEMENTS", 2 * 5 * 20 * 33)  # 2 images per chunk
    monkeypatch.setattr(spectral.ce, "_FFT_ELEMENTS", 2 * 20 * 33)  # 1 or 2 classes per FFT
    chunked = ce_spectrum(logits, labels, precision="double")
    torch.testing.assert_close(chunked.band_profile, whole.band_profile, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(chunked.pred_magnitude, whole.pred_magnitude)
    assert chunked.total == pytest.approx(whole.total, rel=1e-12)


def test_auto_precision_is_chosen_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, labels = make_batch(2, 4, 16, 16, seed=14, ignore=0.0)
    onehot = F.one_hot(labels[1], 4).permute(2, 0, 1).float()
    logits[1] += 15.0 * onehot  # the second image is predicted confidently
    monkeypatch.setattr(spectral.ce, "_CHUNK_ELEMENTS", 4 * 16 * 16)  # one image per chunk
    spectrum = ce_spectrum(logits, labels)
    expected = F.cross_entropy(logits.double(), labels).item()
    assert spectrum.precision == "mixed"
    assert abs(spectrum.band_profile.sum().item() - expected) / expected <= 1e-6


def test_float64_logits_use_double_precision() -> None:
    logits, labels = make_batch(1, 3, 16, 16, seed=5)
    spectrum = ce_spectrum(logits.double(), labels, precision="single")
    expected = F.cross_entropy(logits.double(), labels, ignore_index=IGNORE).item()
    assert spectrum.precision == "double"
    assert abs(spectrum.band_profile.sum().item() - expected) / expected <= 1e-12


def test_constant_maps_put_all_ce_in_band_zero() -> None:
    classes, height, width = 4, 12, 15
    per_class = torch.tensor([0.3, -1.2, 2.0, 0.7])
    logits = per_class.view(1, classes, 1, 1).expand(2, classes, height, width).contiguous()
    labels = torch.full((2, height, width), 2, dtype=torch.long)
    spectrum = ce_spectrum(logits, labels)
    expected = F.cross_entropy(logits, labels).item()
    assert spectrum.band_profile[0].item() == pytest.approx(expected, rel=1e-6)
    assert spectrum.band_profile[1:].abs().max().item() <= 1e-9
    assert spectrum.label_magnitude[1:].abs().max().item() <= 1e-9
    assert spectrum.r_ce(0) == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- R_ce


def test_r_ce_is_zero_at_the_last_band_and_beyond() -> None:
    logits, labels = make_batch(2, 5, 20, 33, seed=1)
    spectrum = ce_spectrum(logits, labels)
    assert spectrum.max_band == 16
    assert spectrum.r_ce(spectrum.max_band) == 0.0
    assert spectrum.r_ce(10_000) == 0.0
    assert spectrum.r_ce(0) > 0.0


def test_r_ce_follows_the_cumulative_sum() -> None:
    logits, labels = make_batch(2, 5, 17, 17, seed=2)
    spectrum = ce_spectrum(logits, labels)
    truncated = spectrum.truncated
    torch.testing.assert_close(truncated, torch.cumsum(spectrum.band_profile, 0))
    for k in range(spectrum.max_band):
        expected = abs(1.0 - truncated[k].item() / spectrum.total)
        assert spectrum.r_ce(k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_r_ce_vectorised_over_a_tensor() -> None:
    logits, labels = make_batch(2, 5, 16, 16, seed=3)
    spectrum = ce_spectrum(logits, labels)
    nus = torch.tensor([[0, 3], [8, 100]])
    rates = spectrum.r_ce(nus)
    assert isinstance(rates, torch.Tensor)
    assert rates.shape == nus.shape
    assert rates.dtype == torch.float64
    expected = torch.tensor([[spectrum.r_ce(int(n)) for n in row] for row in nus.tolist()])
    torch.testing.assert_close(rates, expected.double())
    assert rates[1, 1].item() == 0.0


@pytest.mark.parametrize("bad", [-1, torch.tensor([2, -3])])
def test_negative_band_limit_is_an_input_error(bad: int | torch.Tensor) -> None:
    logits, labels = make_batch(1, 3, 9, 9)
    spectrum = ce_spectrum(logits, labels)
    with pytest.raises(InputError, match="-"):
        spectrum.r_ce(bad)


def test_fractional_band_limit_is_an_input_error() -> None:
    spectrum = ce_spectrum(*make_batch(1, 3, 9, 9))
    with pytest.raises(InputError, match=r"2\.5"):
        spectrum.r_ce(2.5)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- accumulation


def test_accumulator_equals_one_spectrum_of_the_concatenation() -> None:
    """Same sizes: batching does not change the result (float64 FFTs, so exact to rounding)."""
    batches = [make_batch(n, 5, 20, 33, seed=s) for n, s in [(2, 1), (1, 2), (3, 3)]]
    acc = SpectrumAccumulator(precision="double")
    for logits, labels in batches:
        acc.update(logits, labels)
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    whole = ce_spectrum(logits, labels, precision="double")
    assert acc.n_images == 6
    assert acc.n_valid == whole.n_valid
    assert acc.total == pytest.approx(whole.total, rel=1e-12)
    torch.testing.assert_close(acc.band_profile, whole.band_profile, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(acc.label_magnitude, whole.label_magnitude, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(acc.pred_magnitude, whole.pred_magnitude, rtol=1e-9, atol=1e-12)
    assert acc.r_ce(4) == pytest.approx(whole.r_ce(4), rel=1e-9)


def test_accumulator_over_sizes_is_the_valid_pixel_weighted_combination() -> None:
    shapes = [(2, 17, 17), (1, 20, 33), (3, 16, 16)]
    batches = [make_batch(n, 4, h, w, seed=i) for i, (n, h, w) in enumerate(shapes)]
    acc = SpectrumAccumulator()
    spectra = [acc.update(logits, labels) for logits, labels in batches]
    bands = max(s.band_profile.numel() for s in spectra)
    weighted = torch.zeros(bands, dtype=torch.float64)
    for s in spectra:
        weighted[: s.band_profile.numel()] += s.band_profile * s.n_valid
    n_valid = sum(s.n_valid for s in spectra)
    ce_sum = sum(
        F.cross_entropy(lg, lb, ignore_index=IGNORE, reduction="sum").item() for lg, lb in batches
    )
    assert acc.max_band == 16
    assert acc.n_valid == n_valid
    torch.testing.assert_close(acc.band_profile, weighted / n_valid)
    assert acc.total == pytest.approx(ce_sum / n_valid, rel=1e-6)
    assert acc.band_profile.sum().item() == pytest.approx(acc.total, rel=1e-6)
    # Bands 9..16 exist only in the 20 x 33 batch: its magnitudes alone.
    torch.testing.assert_close(acc.label_magnitude[9:], spectra[1].label_magnitude[9:])
    assert acc.r_ce(16) == 0.0


def test_dataset_r_ce_is_a_ratio_of_sums_not_a_mean_of_ratios() -> None:
    """DESIGN: over a data set, the band profile and L_CE are sums over images weighted by
    N_valid, and R_ce is formed from those sums. Checked against the definition image by image
    (``reference_spectrum``) on two images that disagree: one with constant logits (all of its
    CE in band 0, so R_ce 0 at every band) and every pixel valid, and a random one with a
    quarter of its pixels valid; the mean of the two images' R_ce is about twice the right
    value here, so the test tells the two readings apart."""
    height = width = 16
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    smooth_labels = (rows >= height // 2).long().unsqueeze(0)  # two halves
    smooth_logits = torch.zeros(1, 3, height, width, dtype=torch.float64)
    rough_logits, rough_labels = make_batch(1, 3, height, width, seed=7, ignore=0.0)
    rough_labels[:, 4:, :] = IGNORE  # a quarter of its pixels are valid
    images = [(smooth_logits, smooth_labels), (rough_logits.double(), rough_labels)]
    acc = SpectrumAccumulator(precision="double")
    for logits, labels in images:
        acc.update(logits, labels)

    nu_max = 2
    profile_sum, ce_sum, ratios = torch.zeros(height // 2 + 1, dtype=torch.float64), 0.0, []
    for logits, labels in images:
        ref = reference_spectrum(logits, labels)
        n_valid = int((labels != IGNORE).sum())
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum").item()
        profile_sum += ref["profile"] * n_valid
        ce_sum += ce
        ratios.append(abs(1.0 - ref["profile"][: nu_max + 1].sum().item() / (ce / n_valid)))
    ratio_of_sums = abs(1.0 - profile_sum[: nu_max + 1].sum().item() / ce_sum)
    mean_of_ratios = sum(ratios) / len(ratios)
    assert ratios[0] == pytest.approx(0.0, abs=1e-12)
    assert mean_of_ratios > 1.5 * ratio_of_sums > 0.01  # the two readings differ here
    assert acc.r_ce(nu_max) == pytest.approx(ratio_of_sums, rel=1e-9)


def test_to_frame_and_csv(tmp_path: Path) -> None:
    acc = SpectrumAccumulator()
    acc.update(*make_batch(2, 5, 17, 17, seed=4))
    frame = acc.to_frame()
    assert list(frame.columns) == [
        "k",
        "band_profile",
        "r_ce",
        "label_magnitude",
        "pred_magnitude",
        "label_magnitude_norm",
        "pred_magnitude_norm",
    ]
    assert frame["k"].tolist() == list(range(9))
    assert frame["r_ce"].iloc[-1] == 0.0
    assert frame["label_magnitude_norm"].max() == pytest.approx(1.0)
    assert frame["pred_magnitude_norm"].max() == pytest.approx(1.0)
    assert frame["band_profile"].sum() == pytest.approx(acc.total, rel=1e-6)
    path = acc.to_csv(tmp_path / "spectrum.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), frame, check_dtype=False)


def test_empty_accumulator_has_nan_total() -> None:
    acc = SpectrumAccumulator()
    assert acc.n_images == 0
    assert math.isnan(acc.total)
    assert math.isnan(acc.r_ce(3))


def test_all_ignored_batch_adds_no_ce() -> None:
    logits, labels = make_batch(1, 3, 9, 9, seed=1)
    spectrum = ce_spectrum(logits, torch.full_like(labels, IGNORE))
    assert spectrum.n_valid == 0
    assert math.isnan(spectrum.total)
    assert spectrum.band_profile.abs().sum().item() == 0.0
    acc = SpectrumAccumulator()
    acc.add(spectrum)
    acc.update(logits, labels)
    assert acc.total == pytest.approx(ce_spectrum(logits, labels).total, rel=1e-12)


# --------------------------------------------------------------------------- input errors


def test_shape_mismatch_names_both_shapes() -> None:
    logits, labels = make_batch(2, 3, 9, 9)
    with pytest.raises(InputError, match=r"\(2, 3, 9, 9\).*\(2, 9, 8\)"):
        ce_spectrum(logits, labels[:, :, :8])


def test_label_out_of_range_is_an_input_error() -> None:
    logits, labels = make_batch(1, 3, 9, 9)
    labels[0, 4, 4] = 3
    with pytest.raises(InputError, match="label 3"):
        ce_spectrum(logits, labels)


def test_float_labels_and_unknown_precision_are_input_errors() -> None:
    logits, labels = make_batch(1, 3, 9, 9)
    with pytest.raises(InputError, match="integer"):
        ce_spectrum(logits, labels.float())
    with pytest.raises(InputError, match="'quad'"):
        ce_spectrum(logits, labels, precision="quad")


# --------------------------------------------------------------------------- label spectrum


def test_label_spectrum_energy_and_magnitudes() -> None:
    logits, labels = make_batch(2, 5, 20, 33, seed=9)
    spectrum = label_spectrum(labels, num_classes=5)
    ce = ce_spectrum(logits, labels)
    torch.testing.assert_close(spectrum.label_magnitude, ce.label_magnitude, rtol=1e-6, atol=1e-9)
    assert spectrum.energy.sum().item() == pytest.approx(spectrum.n_valid, rel=1e-6)
    above = spectrum.energy_above
    assert above[-1].item() == 0.0
    assert above[0].item() == pytest.approx(1 - spectrum.energy[0].item() / spectrum.n_valid)
    assert bool((above[:-1] >= above[1:] - 1e-12).all())


def test_label_spectrum_accumulator_and_frame() -> None:
    acc = LabelSpectrumAccumulator(num_classes=4)
    first = acc.update(make_batch(2, 4, 16, 16, seed=1)[1])
    second = acc.update(make_batch(1, 4, 20, 33, seed=2)[1])
    energy = torch.zeros(17, dtype=torch.float64)
    energy[:9] += first.energy
    energy += second.energy
    torch.testing.assert_close(acc.energy, energy)
    frame = acc.to_frame()
    assert list(frame.columns) == [
        "k",
        "label_magnitude",
        "label_magnitude_norm",
        "energy",
        "energy_above",
    ]
    assert len(frame) == 17
    assert frame["energy_above"].iloc[-1] == 0.0
    smooth = torch.zeros(1, 32, 32, dtype=torch.long)
    smooth[:, :, 16:] = 1
    assert label_spectrum(smooth, 2).energy_above[8].item() < 0.05


# --------------------------------------------------------------------------- helpers


def test_band_lrg_conversions() -> None:
    assert [band_of_lrg(s) for s in (129, 97, 17, 1)] == [64, 48, 8, 0]
    assert [lrg_of_band(nu) for nu in (64, 8, 0)] == [129, 17, 1]
    with pytest.raises(InputError, match="-1"):
        lrg_of_band(-1)


def test_paper_bands() -> None:
    assert paper_bands(513) == {
        "nu_256": 256,
        "nu_64": 64,
        "nu_48": 48,
        "nu_40": 40,
        "nu_32": 32,
        "nu_24": 24,
        "nu_16": 16,
        "nu_8": 8,
    }
    assert sorted(paper_bands(65).values()) == [1, 2, 3, 4, 5, 6, 8, 32]
    small = paper_bands(9)
    assert all(v >= 0 for v in small.values())
    assert len(set(small.values())) == len(small)
    with pytest.raises(InputError, match="0"):
        paper_bands(0)


def test_spectrum_is_a_frozen_dataclass() -> None:
    spectrum = ce_spectrum(*make_batch(1, 3, 9, 9))
    assert isinstance(spectrum, CESpectrum)
    with pytest.raises(AttributeError):
        spectrum.total = 0.0  # type: ignore[misc]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    logits, labels = make_batch(2, 5, 33, 20, seed=12)
    cpu = ce_spectrum(logits, labels, precision="double")
    gpu = ce_spectrum(logits.cuda(), labels.cuda(), precision="double")
    torch.testing.assert_close(gpu.band_profile, cpu.band_profile, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.label_magnitude, cpu.label_magnitude, rtol=1e-9, atol=1e-9)
    auto = ce_spectrum(logits.cuda(), labels.cuda())
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE).item()
    assert abs(auto.band_profile.sum().item() - expected) / expected <= 1e-6
