"""Small CLI behaviours, each on real tiny models and data: post-hoc results as a table,
FLOPs-counting progress, API column names, formatted floats, R_ce bands in numeric order,
overrides that would collapse a grid, and the dry run's compute estimate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.cli import main
from search_spaces import get_space
from trainables.errors import InputError
from trainables.flops import grid_flops
from trainables.run_schema import r_ce_point_band

#: A one-epoch trial of the tiny timm test backbone at 33 x 33 (native grid 9).
TRAIN = [
    "train",
    "--model",
    "dan",
    "--backbone",
    "test_resnet",
    "--input-size",
    "33",
    "--num-classes",
    "3",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--train-length",
    "2",
    "--eval-length",
    "2",
    "--no-progress",
]
_NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?(?![\w.])")


def significant_digits(text: str) -> list[int]:
    """Significant digits of every decimal number in ``text`` (integers are not floats)."""
    out = []
    for number in _NUMBER.findall(text):
        mantissa = number.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
        out.append(len(mantissa))
    return out


def test_train_posthoc_is_a_table_and_nothing_retrained_is_not_an_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoints = ["--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main([*TRAIN, *checkpoints]) == 0
    first = capsys.readouterr()
    assert "epoch 1/1:" in first.err
    # (a) the same command on the finished checkpoint, with post-hoc LRGs: evaluated, not trained
    assert main([*TRAIN, *checkpoints, "--eval-lrgs", "7", "5"]) == 0
    again = capsys.readouterr()
    assert "epoch 1/1" not in again.err and "nothing trained" in again.err
    lines = again.out.splitlines()
    start = lines.index(
        "post-hoc truncation (the final model evaluated at each LRG, not retrained):"
    )
    header = lines[start + 1].split()
    assert header == [
        "lrg",
        "miou",
        "boundary_iou",
        "pixel_acc",
        "loss",
        "gflops",
        "fpi",
        "r_ce_lrg",
    ]
    assert [line.split()[0] for line in lines[start + 2 :]] == ["7", "5"]
    # (d) every float on stdout has at most 4 significant digits
    digits = significant_digits(again.out)
    assert digits and max(digits) <= 4, again.out
    assert "params: 1," in again.out  # counts keep every digit, grouped

    # (e) JSON: R_ce bands and post-hoc LRGs in numeric order
    assert main([*TRAIN, *checkpoints, "--eval-lrgs", "7", "5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    bands = [int(k.removeprefix("nu")) for k in summary["r_ce"]]
    assert bands == sorted(bands) and 16 in bands and 4 in bands  # nu4 before nu16
    assert list(summary["posthoc"]) == ["5", "7"]
    points = [k for k in summary["posthoc"]["5"] if r_ce_point_band(k) is not None]
    assert [r_ce_point_band(k) for k in points] == sorted(r_ce_point_band(k) or 0 for k in points)


def test_labels_only_plan_counts_with_progress_and_full_column_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "--labels-only", "--dataset", "synthetic-fine", "--input-size", "33"]
    argv += ["--num-classes", "3", "--option", "length=2", "--model", "dan"]
    out = tmp_path / "plan.yaml"
    assert main([*argv, "--backbone", "test_resnet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    # (b) a progress line and a done line on stderr
    assert "counting FLOPs of 4 LRGs for dan/test_resnet at 33 ..." in captured.err
    assert re.search(r"counted FLOPs in \d+\.\d s", captured.err)
    # (c) the API's names
    header = next(line for line in captured.out.splitlines() if line.startswith("lrg "))
    assert {"predicted_drop", "relative_fpi"} <= set(header.split())
    assert not {"pred_drop", "rel_fpi", "pred_fpi", "pred_miou"} & set(header.split())
    # the recommended trial: what the labels give, and what they do not
    command = next(line for line in captured.out.splitlines() if line.startswith("train it: "))
    assert "--model dan --dataset synthetic-fine --backbone test_resnet" in command
    assert "--option length=2" in command
    assert "not known to the plan" in captured.out and "epochs" in captured.out
    from search_spaces import load_space_file

    (trial,) = load_space_file(out).trials()
    assert (trial.model, trial.dataset, trial.input_size, trial.extra) == (
        "dan",
        "synthetic-fine",
        33,
        {"length": 2},
    )


def test_an_override_that_makes_trials_identical_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    smoke = get_space("smoke")
    assert len(smoke.with_overrides({"epochs": "2"})) == 4  # no collapse: fine
    with pytest.raises(InputError, match=r"lrg=8 makes 4 of the 4 trials .* identical"):
        smoke.with_overrides({"lrg": "8"})
    # (f) one line, exit 2, nothing counted
    assert main(["sweep", "--space", "smoke", "--set", "lrg=8", "--dry-run"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "lrg=8" in err[0] and "2 distinct left" in err[0], err
    assert captured.out == ""
    assert main(["sweep", "--space", "demo", "--set", "lrg=5", "--dry-run"]) == 2
    assert "20 of the 26 trials" in capsys.readouterr().err


def _total(out: str) -> float:
    line = next(line for line in out.splitlines() if line.startswith("total: "))
    return float(line.split()[1].replace(",", ""))


def test_dry_run_estimates_compute_and_gpu_hours(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sweep", "--space", "smoke", "--dry-run"]
    assert main([*argv, "--gpu", "h100", "--utilisation", "0.5"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.index("4 trials\n") < out.index("estimated compute")  # the table first
    assert "counting FLOPs of network 1/2: deeplabv3plus/resnet18 at 33" in captured.err
    # the formula: forward GFLOPs x (train images x epochs x 3 + eval images x evaluations)
    expected = 0.0
    for trial in get_space("smoke").trials():
        (gflops,) = grid_flops(trial.model, trial.backbone, 33, 3, [trial.lrg]).values()
        evaluations = 1 + 1  # one evaluation epoch and the initial spectrum pass
        expected += gflops.gflops * (8 * 1 * 3 + 4 * evaluations) / 1e6
    assert _total(out) == pytest.approx(expected, rel=1e-3)
    hours = expected * 1e15 / (989e12 * 0.5) / 3600
    line = next(line for line in out.splitlines() if line.startswith("GPU-hours: "))
    assert float(line.split()[1]) == pytest.approx(hours, rel=1e-3)
    assert "H100 (989 TFLOPS peak dense bf16) at 50% utilisation" in line

    # a strategy: the references it trains at least, against the exhaustive sweep
    assert main([*argv, "--strategy", "paper", "--device-tflops", "100"]) == 0
    out = capsys.readouterr().out
    assert "strategy estimate: trains at least 2 of the 4 trials" in out
    assert "saves 2 trainings (50%)" in out
    assert "GPU-hours for the references" in out
    line = next(line for line in out.splitlines() if line.startswith("GPU-hours: "))
    hours = _total(out) * 1e15 / 100e12 / 3600  # a sustained rating: no utilisation
    assert float(line.split()[1]) == pytest.approx(hours, rel=1e-3)
    assert line.endswith("on 100 TFLOPS sustained")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gpu", "H100"], "goes with --dry-run"),
        (["--dry-run", "--gpu", "B9000"], "not a known GPU"),
        (["--dry-run", "--utilisation", "0.5"], "needs --gpu"),
        (["--dry-run", "--gpu", "A100", "--utilisation", "1.5"], "not a fraction"),
        (["--dry-run", "--device-tflops", "0"], "must be > 0"),
    ],
)
def test_cost_flags_are_checked(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--space", "smoke", "--storage", str(tmp_path / "runs"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()
