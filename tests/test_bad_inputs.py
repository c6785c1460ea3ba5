"""Bad files given as input: one line on stderr naming the value, exit 2, before any work.

Each test builds the bad input under ``tmp_path``, runs ``orchestrator.cli.main`` and checks
that nothing was created: no output directory, no checkpoint, no tracking store or lock file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_data import make_folder

from orchestrator.cli import main

#: Text torch.load puts in its errors: advice to load unsafely, never to be passed on.
UNSAFE_ADVICE = "weights_only"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, without a tracking URI or Ray address from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    """Run the CLI; it must exit 2 with one stderr line holding every fragment, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"spectral-sweep {argv[0]}: error: "), err
    assert "Traceback" not in err and UNSAFE_ADVICE not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def listing(root: Path) -> set[Path]:
    """Every path under ``root`` (to check that a failed command created nothing)."""
    return set(root.rglob("*"))


def text_file(path: Path, text: str = "not what you think\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------- tracking URI (1-3)


@pytest.fixture
def not_a_db(in_tmp: Path) -> Path:
    """A text file where an SQLite database is expected."""
    return text_file(in_tmp / "store" / "notadb.db", "this is not a database\n")


def test_runs_with_a_text_file_as_sqlite_store(
    not_a_db: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = listing(in_tmp)
    uri = f"sqlite:///{not_a_db}"
    fails_with(
        capsys,
        ["runs", "--experiment", "E", "--tracking-uri", uri],
        uri,
        "is not an SQLite database",
    )
    assert listing(in_tmp) == before and not_a_db.read_text() == "this is not a database\n"


def test_analyze_with_a_text_file_as_sqlite_store(
    not_a_db: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = listing(in_tmp)
    out = in_tmp / "report"
    uri = f"sqlite:///{not_a_db}"
    fails_with(
        capsys,
        ["analyze", "--experiment", "E", "--out", str(out), "--tracking-uri", uri],
        uri,
        "is not an SQLite database",
    )
    assert listing(in_tmp) == before and not out.exists()


def test_sweep_with_a_text_file_as_sqlite_store(
    not_a_db: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = in_tmp / "runs"  # not created by a refused sweep
    before = listing(in_tmp)
    uri = f"sqlite:///{not_a_db}"
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--storage", str(storage), "--tracking-uri", uri],
        uri,
        "is not an SQLite database",
    )
    assert listing(in_tmp) == before and not storage.exists()


def test_sweep_dry_run_with_a_text_file_as_sqlite_store(
    not_a_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{not_a_db}"
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--dry-run", "--tracking-uri", uri],
        uri,
        "is not an SQLite database",
    )


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: f"sqlite:///{d}", "is a directory"),  # the store's directory, not its file
        (lambda d: str(d / "notadb.db"), "plain path to a file that is not an SQLite database"),
        (lambda d: (d / "notadb.db").as_uri(), "plain path to a file that is not an SQLite"),
    ],
    ids=["sqlite-dir", "plain-path", "file-uri"],
)
def test_runs_with_other_store_paths_that_are_no_database(
    not_a_db: Path, capsys: pytest.CaptureFixture[str], make: Any, fragment: str
) -> None:
    uri = make(not_a_db.parent)
    fails_with(capsys, ["runs", "--experiment", "E", "--tracking-uri", uri], uri, fragment)


def test_tracking_uri_check_accepts_new_empty_and_real_databases(tmp_path: Path) -> None:
    import sqlite3

    from orchestrator.uris import check_tracking_uri
    from trainables.errors import InputError

    check_tracking_uri(f"sqlite:///{tmp_path / 'new.db'}")  # MLflow creates it
    (tmp_path / "empty.db").touch()
    check_tracking_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    sqlite3.connect(tmp_path / "real.db").execute("create table t (x)").connection.close()
    with pytest.raises(InputError, match=r"real\.db is an SQLite database but not an MLflow"):
        check_tracking_uri(f"sqlite:///{tmp_path / 'real.db'}")  # someone else's: untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "real.db"]
    under_a_file = f"sqlite:///{tmp_path / 'empty.db' / 'mlflow.db'}"
    with pytest.raises(InputError, match=r"empty\.db is a file, not a directory"):
        check_tracking_uri(under_a_file)


@pytest.mark.parametrize("command", ["runs", "sweep"])
def test_a_database_that_is_not_an_mlflow_store_is_left_as_it_was(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An SQLite database of someone else's, and (for reading) an empty file: before, MLflow
    wrote its schema into both and then the command refused (or a sweep ran in it)."""
    import sqlite3

    foreign, empty = in_tmp / "other.db", in_tmp / "afile"
    sqlite3.connect(foreign).execute("create table t (x)").connection.close()
    empty.touch()
    argv = {"runs": ["runs", "--experiment", "smoke"], "sweep": ["sweep", "--space", "smoke"]}
    before = {p: p.read_bytes() for p in (foreign, empty)}
    fails_with(
        capsys,
        [*argv[command], "--tracking-uri", f"sqlite:///{foreign}"],
        "is an SQLite database but not an MLflow store (its tables: t)",
    )
    if command == "runs":  # a sweep may start a new store in an empty file
        fails_with(capsys, ["runs", "--experiment", "smoke", "--tracking-uri",
                            f"sqlite:///{empty}"], "holds no MLflow store")  # fmt: skip
    assert {p: p.read_bytes() for p in (foreign, empty)} == before
    assert not (in_tmp / "spectral_sweep_runs").exists()


def test_plain_path_to_a_database_suggests_its_sqlite_uri(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    db = in_tmp / "mlflow.db"
    sqlite3.connect(db).execute("create table t (x)").connection.close()
    fails_with(
        capsys,
        ["runs", "--experiment", "E", "--tracking-uri", str(db)],
        f"pass it as sqlite:///{db}",
    )


# --------------------------------------------------------------------- checkpoint dir (4-5)


def test_train_checkpoint_dir_that_is_a_file(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainables.trial

    def no_work(*_: Any, **__: Any) -> Any:
        raise AssertionError("data read before the checkpoint directory was checked")

    monkeypatch.setattr(trainables.trial, "build_datasets", no_work)
    target = text_file(in_tmp / "ck")
    before = listing(in_tmp)
    fails_with(
        capsys, ["train", "--checkpoint-dir", str(target)], f"--checkpoint-dir {str(target)!r}"
    )
    below = target / "sub"
    fails_with(capsys, ["train", "--checkpoint-dir", str(below)], str(below), "cannot be created")
    assert listing(in_tmp) == before and target.read_text() == "not what you think\n"


def test_run_trial_checkpoint_dir_that_is_a_file(tmp_path: Path) -> None:
    from trainables.errors import InputError
    from trainables.trial import run_trial

    target = text_file(tmp_path / "ck")
    with pytest.raises(InputError, match="is a file; expected a directory"):
        run_trial({"backbone": "test_resnet", "input_size": 32}, checkpoint_dir=target)


def test_spg_checkpoint_that_is_no_checkpoint(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = text_file(in_tmp / "ck.pt")
    out = in_tmp / "out"
    fails_with(
        capsys,
        [
            "spg",
            "--op",
            "decoder",
            "--size",
            "8",
            "--checkpoint-dir",
            str(target),
            "--out",
            str(out),
        ],
        str(target),
        "is not a loadable trial checkpoint",
    )
    assert not out.exists()


@pytest.mark.parametrize("command", ["spectrum", "spg"])
def test_out_that_is_a_file(in_tmp: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    target = text_file(in_tmp / "out")
    argv = (
        ["spectrum", "--dataset", "synthetic-smooth"]
        if command == "spectrum"
        else ["spg", "--op", "conv", "--size", "8"]
    )
    fails_with(capsys, [*argv, "--out", str(target)], str(target), "is not a directory")
    assert target.read_text() == "not what you think\n"


# --------------------------------------------------------------------- pretrained weights (6)


def _text(path: Path) -> None:
    path.write_text("conv1.weight: 0.1 0.2\n")


def _tensor(path: Path) -> None:
    import torch

    torch.save(torch.zeros(3), path)


def _list(path: Path) -> None:
    import torch

    torch.save([torch.zeros(3)], path)


def _object(path: Path) -> None:
    path.write_bytes(pickle.dumps(Path("x"), protocol=4))  # a pickle weights_only refuses


def _no_tensors(path: Path) -> None:
    import torch

    torch.save({"epoch": 3}, path)


def _bad_safetensors(path: Path) -> None:
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")


@pytest.mark.parametrize(
    ("name", "write", "found"),
    [
        ("weights.txt", _text, "are not a PyTorch or safetensors file"),
        ("tensor.pt", _tensor, "hold a Tensor"),
        ("list.pth", _list, "hold a list"),
        ("object.pt", _object, "are not a PyTorch or safetensors file"),
        ("epoch.pt", _no_tensors, "hold a mapping without tensors"),
        ("broken.safetensors", _bad_safetensors, "are not a PyTorch or safetensors file"),
    ],
)
def test_train_pretrained_that_is_no_state_dict(
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    write: Any,
    found: str,
) -> None:
    import trainables.trial

    def no_work(*_: Any, **__: Any) -> Any:
        raise AssertionError("data read before the pretrained weights were checked")

    monkeypatch.setattr(trainables.trial, "build_datasets", no_work)
    weights = in_tmp / name
    write(weights)
    ckpt = in_tmp / "ck"
    before = listing(in_tmp)
    fails_with(
        capsys,
        ["train", "--pretrained", str(weights), "--checkpoint-dir", str(ckpt)],
        f"pretrained weights {str(weights)!r}",
        found,
        "expected a state dict of the backbone (a .pth/.pt/.safetensors file holding a mapping "
        "of parameter names to tensors)",
    )
    assert listing(in_tmp) == before and not ckpt.exists()


def test_trial_config_pretrained_that_is_no_state_dict(tmp_path: Path) -> None:
    from trainables.errors import InputError
    from trainables.trial import run_trial

    weights = tmp_path / "w.pt"
    _tensor(weights)
    with pytest.raises(InputError, match="hold a Tensor; expected a state dict") as caught:
        run_trial({"backbone": "test_resnet", "input_size": 32, "pretrained": str(weights)})
    assert caught.value.__cause__ is None and UNSAFE_ADVICE not in str(caught.value)


def test_weights_file_check_names_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The torch-free first look the preflight and the trial share (trainables.weights_file)."""
    from trainables.errors import InputError
    from trainables.weights_file import check_weights_file

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.pth").write_bytes(b"not read here")
    assert check_weights_file("~/w.pth") == tmp_path / "w.pth"  # ~ is the user's home
    for given, what in ((tmp_path, "is not a file"), (tmp_path / "none.pth", "not found")):
        with pytest.raises(InputError) as caught:
            check_weights_file(given)
        assert str(caught.value).startswith(f"pretrained {str(given)!r}: weights file {what};")


def test_pretrained_safetensors_and_pth_load(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from trainables.models import build_model
    from trainables.models.encoder import check_state_file

    torch.manual_seed(1)
    source = build_model("dan", "test_resnet", num_classes=3).encoder.backbone.state_dict()
    save_file({k: v.contiguous() for k, v in source.items()}, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": source}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        check_state_file(tmp_path / name)
        torch.manual_seed(2)
        loaded = build_model("dan", "test_resnet", num_classes=3, pretrained=tmp_path / name)
        got = loaded.encoder.backbone.state_dict()
        assert all(torch.equal(source[k], got[k]) for k in source), name


# --------------------------------------------------------------------- folder data set (7)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("notes.txt", "is not an image file; expected only image files (.jpg, .jpeg, .png)"),
        ("x.png", "cannot be read (not a JPEG or PNG image)"),
        ("sub", "is not a file"),
    ],
)
def test_spectrum_folder_with_a_non_image_in_images(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], name: str, fragment: str
) -> None:
    import shutil

    root = make_folder(in_tmp / "data", ["a", "b"])
    bad = root / "images" / name
    if name == "sub":
        bad.mkdir()
    else:
        text_file(bad)
        shutil.copy(root / "masks" / "a.png", root / "masks" / f"{bad.stem}.png")  # has a mask
    out = in_tmp / "out"
    fails_with(
        capsys,
        ["spectrum", "--dataset", "folder", "--data-root", str(root), "--out", str(out)],
        repr(str(bad)),
        fragment,
    )
    assert not out.exists()


def test_folder_ignores_hidden_files_and_refuses_other_formats(tmp_path: Path) -> None:
    from PIL import Image

    from trainables.data import build_dataset
    from trainables.errors import InputError

    root = make_folder(tmp_path, ["a", "b"])
    text_file(root / "images" / ".DS_Store")
    assert len(build_dataset("folder", root, input_size=16)) == 2
    Image.new("RGB", (4, 4)).save(root / "images" / "c.png", format="BMP")
    with pytest.raises(InputError, match=r"c\.png' is a BMP file"):
        build_dataset("folder", root, input_size=16)


# --------------------------------------------------------------------- found in an outside audit


def damaged_store(path: Path) -> bytes:
    """A real SQLite database (2 MB of rows) cut short, as a full disk leaves it: the header is
    intact, so only SQLite's own check tells; returns its bytes."""
    import sqlite3
    from contextlib import closing

    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE metrics (key TEXT, value BLOB)")
        conn.executemany(
            "INSERT INTO metrics VALUES (?, ?)", [(str(i), b"x" * 1000) for i in range(2000)]
        )
        conn.commit()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 4])
    return path.read_bytes()


@pytest.mark.parametrize("command", ["runs", "analyze", "backtest", "sweep"])
def test_a_damaged_store_is_refused_and_left_as_it_was(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    db = in_tmp / "store" / "mlflow.db"
    before = damaged_store(db)
    uri = f"sqlite:///{db}"
    argv = {
        "runs": ["runs", "--experiment", "E"],
        "analyze": ["analyze", "--experiment", "E", "--out", str(in_tmp / "out")],
        "backtest": ["backtest", "--experiment", "E", "--strategy", "paper"],
        "sweep": ["sweep", "--space", "smoke", "--storage", str(in_tmp / "runs")],
    }[command]
    fails_with(capsys, [*argv, "--tracking-uri", uri], uri, "is damaged", "malformed")
    assert db.read_bytes() == before
    assert not (in_tmp / "out").exists() and not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("bogus://x", "no tracking store for scheme 'bogus'"),
        ("http://[::1", "is malformed (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999", "is malformed (Port out of range"),
        ("postgresql+pg8000://u:p@127.0.0.1:9/db", "needs the database driver 'pg8000'"),
        ("mysql+pymysql://u@127.0.0.1/db", "needs the database driver 'pymysql'"),
    ],
)
def test_tracking_uri_mlflow_cannot_use(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], uri: str, fragment: str
) -> None:
    fails_with(capsys, ["runs", "--experiment", "E", "--tracking-uri", uri], repr(uri), fragment)
    dry = ["sweep", "--space", "smoke", "--dry-run", "--tracking-uri", uri]
    fails_with(capsys, dry, repr(uri), fragment)
    assert listing(in_tmp) == set()


def test_analyze_out_that_cannot_be_created(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], paper_runs_csv: Path
) -> None:
    out = "/proc/spectral-sweep-nope"  # a directory no one can create a folder in
    argv = ["analyze", "--runs-csv", str(paper_runs_csv), "--out", out]
    fails_with(capsys, argv, repr(out), "cannot be created")
    assert not Path(out).exists() and listing(in_tmp) == set()


def test_resume_checks_the_sweep_name(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "../elsewhere/demo"
    argv = ["sweep", "--resume", "--name", name, "--storage", str(in_tmp / "runs")]
    fails_with(capsys, argv, repr(name), "not a valid sweep name")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["flops", "--backbone", "resnet18", "--input-size", "100000"],
            "must be an integer in [16, 4096]",
        ),
        (["spg", "--op", "conv", "--size", "100000", "--out", "o"], "must be in [4, 256]"),
        (  # before: a RuntimeError traceback from allocating the crop
            ["spectrum", "--dataset", "synthetic-fine", "--size", "100000", "--out", "o"],
            "must be an integer in [16, 4096]",
        ),
        (
            ["plan", "--labels-only", "--dataset", "synthetic-smooth", "--input-size", "100000"],
            "must be an integer in [16, 4096]",
        ),
    ],
)
def test_sizes_beyond_what_a_trial_accepts(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    fails_with(capsys, argv, "100000", fragment)
    assert listing(in_tmp) == set()


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--name", "a/b"], ["'a/b'", "not a valid sweep name"]),
        (["--scheduler", "asha"], ["--scheduler asha", "eval_every=1"]),
        (["--strategy", "paper", "--estimator", "none.json"], ["none.json", "does not exist"]),
        (["--set", "pretrained=maybe"], ["'maybe'", "weights file not found"]),
        # the strategies' own ranges, and the study database: before, only after Ray started
        (["--strategy", "adaptive", "--stop-probability", "2"], ["--stop-probability 2.0"]),
        (["--strategy", "adaptive", "--budget", "0"], ["--budget 0 must be >= 1"]),
        (["--strategy", "paper", "--max-drop", "-0.1"], ["--max-drop -0.1 is not a fraction"]),
        (["--set", "poly_power=-2"], ["poly_power=-2.0 is out of range"]),
        (
            ["--search", "optuna", "--num-samples", "2", "--optuna-storage", "foo://x"],
            ["--optuna-storage 'foo://x' is not a usable database URL"],
        ),
        (
            ["--search", "optuna", "--num-samples", "2", "--optuna-storage", "sqlite:///no/o.db"],
            ["folder no does not exist"],
        ),
        # Ray gives a trial with no GPU share none (and `auto` then runs it on the CPU)
        (["--set", "device=cuda"], ["device 'cuda'", "--gpus-per-trial 0", "0.5"]),
        pytest.param(
            ["--set", "device=cuda", "--gpus-per-trial", "1"],
            ["device 'cuda'", "no CUDA device"],
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_dry_run_refuses_what_the_sweep_refuses(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragments: list[str]
) -> None:
    for dry in (["--dry-run"], []):  # the same line, before anything starts, either way
        argv = ["sweep", "--space", "demo", "--storage", str(in_tmp / "runs"), *dry, *flags]
        fails_with(capsys, argv, *fragments)
    assert listing(in_tmp) == set()


def test_demo_of_a_space_on_real_data_is_refused_before_its_directory(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo has no --data-root: a paper space is refused, pointing at `sweep` with the
    roots it needs, and its --dir is not made (before: an empty directory, and advice to pass
    --data-root to a command that has none)."""
    target = in_tmp / "d2"
    fails_with(
        capsys,
        ["demo", "--dir", str(target), "--space", "paper-truncation"],
        "the demo runs on generated data",
        "spectral-sweep sweep --space paper-truncation --data-root cityscapes=PATH",
    )
    assert not target.exists()


def test_dry_run_names_an_unknown_backbone_before_the_table(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--space", "demo", "--dry-run", "--set", "backbone=resnt18"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no trial table, no counting
    assert captured.err.startswith("spectral-sweep sweep: error: unknown backbone 'resnt18'")
    assert len(captured.err.strip().splitlines()) == 1 and "resnet18" in captured.err
    assert listing(in_tmp) == set()
