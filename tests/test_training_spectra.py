"""Training-stage spectra (paper Fig. 1, fourth row): the CE band profile at initialisation.

A real tiny trial (the ``tiny`` config of ``test_trial``) evaluates its untrained model once;
``spectrum.csv`` carries that profile as ``band_profile_init``, a resumed trial reuses it from
the checkpoint, and the report overlays it on the final profile when a reference has it.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_trial import tiny

from analysis import analyze, load_runs_csv, read_spectrum
from analysis.report import REPORT_HTML, REPORT_MD, write_outputs
from orchestrator import store
from trainables import run_schema
from trainables.checkpoint import CHECKPOINT_FILE
from trainables.config import TrialConfig
from trainables.disk_cache import CACHE_ENV
from trainables.init_profiles import profile_key
from trainables.run_schema import INIT_PROFILE_COLUMN, Artifact
from trainables.trial import TrialReport, TrialResult, run_trial
from trainables.trial_setup import build_datasets, build_network, make_loader, seed_everything

INIT = INIT_PROFILE_COLUMN


@pytest.fixture(scope="module")
def uninterrupted() -> TrialResult:
    """The tiny 2-epoch trial run straight through (shared by the tests below)."""
    return run_trial(tiny(epochs=2))


def untrained_ce(config: dict[str, Any]) -> float:
    """CE of the trial's model at initialisation, by ``F.cross_entropy`` over the eval set.

    The model is rebuilt the way ``run_trial`` builds it (seed, data sets, network), so it is
    the same untrained model; the spectral code is not used.
    """
    cfg = TrialConfig.from_dict(config)
    seed_everything(cfg.seed)
    _, eval_set, num_classes = build_datasets(cfg)
    model = build_network(cfg, num_classes, torch.device("cpu"))
    model.lrg = cfg.lrg  # type: ignore[assignment]
    model.eval()
    total, valid = 0.0, 0
    with torch.no_grad():
        for images, labels in make_loader(eval_set, cfg, train=False):
            labels = labels.long()
            logits = model(images).float()
            total += float(F.cross_entropy(logits, labels, ignore_index=255, reduction="sum"))
            valid += int((labels != 255).sum())
    return total / valid


def test_the_column_name_is_the_same_contract_on_both_sides() -> None:
    assert run_schema.INIT_PROFILE_COLUMN == INIT_PROFILE_COLUMN == "band_profile_init"


@pytest.mark.slow
def test_init_profile_sums_to_the_untrained_models_ce(
    uninterrupted: TrialResult, tmp_path: Path
) -> None:
    frame = uninterrupted.reports[-1].spectrum
    assert INIT in frame and len(frame[INIT]) == len(frame["band_profile"])
    assert frame[INIT].notna().all()
    ce0 = untrained_ce(tiny(epochs=2))
    # Parseval on the untrained model: its band profile sums to its spatial CE
    assert frame[INIT].sum() == pytest.approx(ce0, rel=1e-6)
    assert ce0 == pytest.approx(math.log(3), abs=0.05)  # an untrained net: close to log(C)
    # the final profile is the trained model's; the init one is not a copy of it
    assert frame["band_profile"].sum() == pytest.approx(uninterrupted.metrics["loss"], rel=1e-6)
    assert not np.allclose(frame[INIT], frame["band_profile"])
    # every evaluation reports the same init profile; init metrics are not the trial's results
    first = uninterrupted.reports[0].spectrum
    assert np.array_equal(first[INIT].to_numpy(), frame[INIT].to_numpy())
    assert not any("init" in name for name in uninterrupted.metrics)
    # spectrum.csv carries it, and analysis reads it back
    store.write_trial_artifacts(tmp_path, frame, uninterrupted.reports[-1].per_class_iou)
    read = read_spectrum(str(tmp_path / Artifact.SPECTRUM_CSV))
    assert read is not None
    np.testing.assert_allclose(read[INIT], frame[INIT], rtol=1e-12)


class _Stopped(Exception):
    pass


def checkpoint_after_first_epoch(ckpt: Path) -> None:
    """The checkpoint a 2-epoch trial leaves when it dies after its first evaluation (a
    finished trial's last checkpoint holds the weights alone: nothing resumes from it)."""

    def stop(report: TrialReport) -> None:
        raise _Stopped(report.epoch)

    with pytest.raises(_Stopped):
        run_trial(tiny(epochs=2), report=stop, checkpoint_dir=ckpt)


@pytest.mark.slow
def test_resume_reuses_the_init_profile_of_the_checkpoint(
    uninterrupted: TrialResult, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    checkpoint_after_first_epoch(ckpt)
    assert "band_profile_init" in torch.load(ckpt / CHECKPOINT_FILE, weights_only=True)
    reports: list[TrialReport] = []
    resumed = run_trial(tiny(epochs=2), report=reports.append, checkpoint_dir=ckpt)
    assert [r.epoch for r in reports] == [1]  # epoch 0 was not trained again
    got = resumed.reports[-1].spectrum
    want = uninterrupted.reports[-1].spectrum
    assert np.array_equal(got[INIT].to_numpy(), want[INIT].to_numpy())
    # not recomputed from the trained weights the resumed trial started from
    assert not np.allclose(got[INIT], got["band_profile"])


@pytest.mark.slow
def test_a_checkpoint_without_the_profile_resumes_quietly_with_nan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "ckpt"
    checkpoint_after_first_epoch(ckpt)
    state = torch.load(ckpt / CHECKPOINT_FILE, weights_only=True)
    del state["band_profile_init"]  # as the code before this column wrote it
    torch.save(state, ckpt / CHECKPOINT_FILE)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        resumed = run_trial(tiny(epochs=2), checkpoint_dir=ckpt)
    assert not caplog.records
    frame = resumed.reports[-1].spectrum
    assert len(frame[INIT]) == len(frame) and frame[INIT].isna().all()
    assert frame["band_profile"].notna().all()
    store.write_trial_artifacts(tmp_path, frame, resumed.reports[-1].per_class_iou)
    read = read_spectrum(str(tmp_path / Artifact.SPECTRUM_CSV))
    assert read is not None and read[INIT].isna().all()


# --------------------------------------------------------------------- the report

LRGS = (17, 13, 9, 5)  # input 65: native 17
BANDS = 33


def spectrum(with_init: bool) -> pd.DataFrame:
    """A spectrum.csv frame; L_ce[k] negative at a few bands, as real profiles are."""
    k = np.arange(BANDS)
    final = 0.5 * 0.6**k
    final[[3, 7]] *= -1
    frame = pd.DataFrame(
        {
            "k": k,
            "band_profile": final,
            "r_ce": np.abs(1 - np.cumsum(final) / final.sum()),
            "label_magnitude_norm": 1.0 / (1 + k) ** 2,
            "pred_magnitude_norm": 1.0 / (1 + k) ** 1.5,
        }
    )
    if with_init:
        init = 1.1 * 0.8**k
        init[5] *= -1
        frame[INIT] = init
    return frame


def analyze_with_spectrum(tmp_path: Path, frame: pd.DataFrame) -> str:
    """Analyse one group whose reference run has ``frame`` as its spectrum.csv; report.html."""
    frame.to_csv(tmp_path / "spectrum.csv", index=False)
    rows = [
        {
            "model": "dan",
            "dataset": "synthetic-smooth",
            "prune_rate": 0.0,
            "lrg": s,
            "miou": 0.8 - 0.01 * (17 - s),
            "gflops": 1.0 + 0.05 * s,
            "spectrum_csv": "spectrum.csv" if s == 17 else "",
        }
        for s in LRGS
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "out"
    outputs = write_outputs(analyze(load_runs_csv(tmp_path / "runs.csv")), out, "runs.csv")
    assert "spectrum.csv" in (out / REPORT_MD).read_text()  # the curve came from the file
    assert (out / REPORT_HTML) in outputs.files
    return (out / REPORT_HTML).read_text()


def test_report_overlays_initial_and_final_profiles(tmp_path: Path) -> None:
    html = analyze_with_spectrum(tmp_path, spectrum(with_init=True))
    figure = tmp_path / "out" / "figures" / "training_spectra.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "at initialisation (dashed) and after training (solid)" in html
    assert "absolute value |L_ce[k]|" in html
    assert html.count("<img") == 7  # the other six: spectra, mIoU-FLOPs, FPI, drops, Pareto, budget


def test_report_without_init_profiles_still_builds(tmp_path: Path) -> None:
    old = spectrum(with_init=False)
    html = analyze_with_spectrum(tmp_path, old)
    assert not (tmp_path / "out" / "figures" / "training_spectra.png").exists()
    assert "initialisation" not in html
    assert html.count("<img") == 6
    read = read_spectrum(str(tmp_path / "spectrum.csv"))  # an old file loads as it is
    assert read is not None and INIT not in read and len(read) == BANDS


def test_report_skips_the_figure_when_the_init_column_is_all_nan(tmp_path: Path) -> None:
    frame = spectrum(with_init=True)
    frame[INIT] = math.nan  # a trial resumed from an old checkpoint
    html = analyze_with_spectrum(tmp_path, frame)
    assert not (tmp_path / "out" / "figures" / "training_spectra.png").exists()
    assert html.count("<img") == 6


def _init(result: TrialResult) -> np.ndarray:
    return np.asarray(result.reports[-1].spectrum[INIT].to_numpy(), dtype=float)


@pytest.mark.slow
def test_an_init_profile_is_made_once_per_network_data_and_lrg(
    fresh_flops_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials that differ only in what training uses share their untrained network's profile:
    the first stores it, the next reads the stored file (a changed file comes back), and each
    trains exactly as without the cache."""
    folder = fresh_flops_cache / "init-profiles"
    monkeypatch.setenv(CACHE_ENV, "off")
    alone = run_trial(tiny(epochs=1, lrg=5))
    assert not folder.exists()
    # the pass itself, checked by F.cross_entropy: Parseval on the untrained model
    assert _init(alone).sum() == pytest.approx(untrained_ce(tiny(epochs=1, lrg=5)), rel=1e-6)
    monkeypatch.setenv(CACHE_ENV, str(fresh_flops_cache))
    first = run_trial(tiny(epochs=1, lrg=5, prune_rate=0.3, lr=0.02, annotation_nu_max=2))
    files = sorted(folder.glob("*.json"))
    assert len(files) == 1 and np.array_equal(_init(first), _init(alone))
    stored = json.loads(files[0].read_text())
    files[0].write_text(json.dumps([2 * v for v in stored]))
    second = run_trial(tiny(epochs=1, lrg=5))
    assert np.array_equal(_init(second), 2 * _init(alone))  # read, not made again
    for key, value in alone.metrics.items():
        if key not in ("epoch_seconds", "train_seconds"):
            assert second.metrics[key] == value, key
    run_trial(tiny(epochs=1, lrg=7))  # another LRG: another pass
    run_trial(tiny(epochs=1, lrg=5, seed=4))  # another seed: other weights
    assert len(list(folder.glob("*.json"))) == 3


def test_init_profiles_are_kept_only_where_the_name_fixes_them() -> None:
    cpu = torch.device("cpu")
    network = ("constructor", "resnet18", 3, "rng")
    cfg = TrialConfig.from_dict(tiny(lrg=5))
    assert profile_key(cfg, network, cpu) is not None
    assert profile_key(cfg, None, cpu) is None  # pretrained weights: read from a file
    on_disk = TrialConfig.from_dict(tiny(dataset="voc", data_root="/data/voc", num_classes=21))
    assert profile_key(on_disk, network, cpu) is None  # files may change under the same path
    same = TrialConfig.from_dict(tiny(lrg=5, prune_rate=0.4, epochs=7, eval_lrgs=(3,)))
    assert profile_key(same, network, cpu) == profile_key(cfg, network, cpu)
    for other in (tiny(lrg=7), tiny(lrg=5, batch_size=2), tiny(lrg=5, eval_length=8)):
        assert profile_key(TrialConfig.from_dict(other), network, cpu) != profile_key(
            cfg, network, cpu
        )
