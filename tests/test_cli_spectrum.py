"""`spectral-sweep spectrum` end to end: CSV + PNG of a data set's label spectrum, exit 2 on bad
input with one line on stderr."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from fixtures_data import make_voc

from orchestrator.cli import main
from trainables.data import build_dataset
from trainables.spectral import LabelSpectrumAccumulator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_outputs(out: Path) -> pd.DataFrame:
    assert (out / "label_spectrum.png").read_bytes()[:8] == PNG_SIGNATURE
    return pd.read_csv(out / "label_spectrum.csv")


def test_synthetic_spectrum_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "spectrum"
    args = ["spectrum", "--dataset", "synthetic-fine", "--size", "33", "--option", "length=6"]
    code = main([*args, "--split", "val", "--batch-size", "4", "--out", str(out)])
    assert code == 0
    frame = read_outputs(out)
    assert list(frame.columns) == [
        "k",
        "label_magnitude",
        "label_magnitude_norm",
        "energy",
        "energy_above",
    ]
    assert frame["k"].tolist() == list(range(17))  # bands 0 .. 33 // 2
    assert frame["label_magnitude_norm"].max() == pytest.approx(1.0)
    above = frame["energy_above"].to_numpy()
    assert (above[:-1] >= above[1:]).all() and above[-1] == 0 and 0 < above[0] < 1
    # the same numbers as accumulating the data set's labels directly
    data = build_dataset("synthetic-fine", split="val", input_size=33, length=6)
    direct = LabelSpectrumAccumulator(data.num_classes)
    direct.update(torch.stack([data.label(i) for i in range(6)]))
    assert torch.allclose(torch.tensor(above), direct.energy_above)
    captured = capsys.readouterr()
    assert "synthetic-fine val: 6 images at 33x33, 5 classes" in captured.out
    assert "energy_above" in captured.out and "label_spectrum.csv" in captured.out
    assert "6/6" in captured.err  # the progress bar


def test_voc_fixture_with_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_voc(tmp_path / "data", {"train": ["a", "b", "c"]})
    out = tmp_path / "out"
    args = ["spectrum", "--dataset", "voc", "--data-root", str(tmp_path / "data")]
    code = main([*args, "--limit", "2", "--size", "24", "--no-progress", "--out", str(out)])
    assert code == 0
    frame = read_outputs(out)
    assert len(frame) == 13
    captured = capsys.readouterr()
    assert "voc train: 2 images at 24x24, 21 classes" in captured.out and captured.err == ""


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--dataset", "vocx"], "unknown data set 'vocx'; choose from: synthetic-smooth"),
        (["--dataset", "voc"], "needs a root directory"),
        (["--dataset", "voc", "--data-root", "/nonexistent/voc"], "/nonexistent/voc"),
        (["--dataset", "synthetic-smooth", "--limit", "0"], "--limit 0 must be >= 1"),
        (["--dataset", "synthetic-smooth", "--option", "size"], "--option 'size' is not KEY=VALUE"),
        (["--dataset", "synthetic-smooth", "--option", "colour=red"], "unknown option 'colour'"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spectrum", *argv, "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in captured.err
    assert lines[0].startswith("spectral-sweep spectrum: error:")
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_fails_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "afile"
    target.write_text("keep me")
    argv = ["spectrum", "--dataset", "synthetic-smooth", "--size", "17", "--out", str(target)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "exists and is not a directory" in err and "\n" not in err
    assert target.read_text() == "keep me"
