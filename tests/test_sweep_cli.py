"""``spectral-sweep sweep`` bad input: one line on stderr, exit 2, before Ray starts."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

import pytest

from orchestrator.cli import build_parser, main


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory (default storage and mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    began = time.perf_counter()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err, err
    assert err.startswith("spectral-sweep"), err
    for fragment in fragments:
        assert fragment in err, err
    assert time.perf_counter() - began < 15
    return err


def test_unknown_space_lists_the_names(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_with(capsys, ["sweep", "--space", "nope"], "unknown search space 'nope'", "smoke")


def test_space_file_with_a_bad_field(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = in_tmp / "s.yaml"
    path.write_text("name: s\ngrid: {model: [dan]}\nfixd: {}\n")
    fails_with(capsys, ["sweep", "--space-file", str(path)], str(path), "unknown field 'fixd'")


def test_value_out_of_range_via_set(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--set", "prune_rate=1.5", "--dry-run"],
        "trial 0",
        "prune_rate=1.5 is out of range",
    )
    fails_with(capsys, ["sweep", "--space", "smoke", "--set", "epochs"], "--set 'epochs'")


def test_real_data_sets_need_existing_roots(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fails_with(capsys, ["sweep", "--space", "paper-annotation"], "--data-root voc=PATH")
    roots = ["--data-root", "voc=/nonexistent/voc"]
    roots += ["--data-root", f"deepglobe={in_tmp}", "--data-root", f"cityscapes={in_tmp}"]
    fails_with(capsys, ["sweep", "--space", "paper-annotation", *roots], "'/nonexistent/voc'")


def test_flag_combinations(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_with(capsys, ["sweep", "--space", "smoke", "--num-samples", "3"], "--search optuna")
    fails_with(capsys, ["sweep", "--space", "smoke", "--multi-objective"], "--search optuna")
    fails_with(capsys, ["sweep", "--space", "smoke", "--cpus-per-trial", "0"], "must be > 0")
    fails_with(capsys, ["sweep", "--space", "smoke", "--max-concurrent", "0"], "must be >= 1")
    fails_with(capsys, ["sweep"], "give --space NAME or --space-file FILE")


def test_asha_on_trials_that_evaluate_once_is_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo space evaluates after the last epoch only: ASHA would have nothing to compare."""
    from orchestrator.preflight import check_scheduler
    from orchestrator.settings import SweepSettings
    from search_spaces import get_space

    argv = ["sweep", "--space", "demo", "--scheduler", "asha"]
    fails_with(capsys, argv, "--scheduler asha", "eval_every=4", "--set eval_every=1")
    assert not list(in_tmp.iterdir())  # nothing created
    space = get_space("demo").to_dict()
    each_epoch = {**space, "overrides": {"eval_every": 1}}
    check_scheduler(SweepSettings(space=each_epoch, name="demo", scheduler="asha"))
    check_scheduler(SweepSettings(space=space, name="demo"))  # FIFO waits for the end anyway


def test_unreachable_ray_address_fails_fast(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    fails_with(
        capsys, ["sweep", "--space", "smoke", "--address", f"127.0.0.1:{port}"], "unreachable"
    )
    fails_with(
        capsys,
        [
            "sweep",
            "--space",
            "smoke",
            "--address",
            f"ray://127.0.0.1:{port}",
            "--tracking-uri",
            "sqlite:///" + str(in_tmp / "m.db"),
        ],
        "mlflow server",
    )
    fails_with(capsys, ["sweep", "--space", "smoke", "--address", "nohost"], "not HOST:PORT")


def test_unusable_tracking_uri(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--tracking-uri", f"http://127.0.0.1:{port}"],
        "unreachable",
    )
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--tracking-uri", "sqlite:////nonexistent/dir/mlflow.db"],
        "/nonexistent/dir does not exist",
    )
    fails_with(capsys, ["sweep", "--space", "smoke", "--tracking-uri", "./mlruns"], "sqlite:///")


def test_resume_needs_an_existing_sweep(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_with(capsys, ["sweep", "--resume", "--space", "smoke"], "no sweep to resume at")
    fails_with(capsys, ["sweep", "--resume"], "--resume needs --name")
    existing = in_tmp / "spectral_sweep_runs" / "smoke"
    existing.mkdir(parents=True)
    (existing / "tuner.pkl").write_bytes(b"")
    fails_with(capsys, ["sweep", "--space", "smoke"], "already exists", "--resume")


def test_a_sweep_saves_absolute_store_paths_and_refuses_damaged_settings(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relative ``sqlite:///`` URI is saved absolute (a resume from another directory writes
    to the same database, not a new one there); a damaged settings file is one line, exit 2."""
    from orchestrator.settings import SWEEP_FILE, SweepSettings, save_settings
    from search_spaces import get_space

    storage = in_tmp / "runs"
    settings = SweepSettings(space=get_space("smoke").to_dict(), name="rel", storage=str(storage),
                             tracking_uri="sqlite:///sub/mlflow.db?timeout=20",
                             optuna_storage="sqlite:///optuna.db")  # fmt: skip
    assert settings.tracking_uri == f"sqlite:///{in_tmp / 'sub' / 'mlflow.db'}?timeout=20"
    assert settings.optuna_storage == f"sqlite:///{in_tmp / 'optuna.db'}"
    absolute = f"sqlite:///{in_tmp / 'a.db'}"
    assert dataclasses.replace(settings, tracking_uri=absolute).tracking_uri == absolute
    saved = save_settings(settings)
    (storage / "rel" / "tuner.pkl").write_bytes(b"")
    saved.write_text('{"space": {"name"')  # cut short by a full disk
    argv = ["sweep", "--resume", "--name", "rel", "--storage", str(storage)]
    fails_with(capsys, argv, SWEEP_FILE, "cannot be read as a sweep's settings")
    saved.write_text("[]")
    fails_with(capsys, argv, "holds no sweep settings")


def test_one_driver_per_sweep(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second driver of a running sweep (two ``--resume`` at once) is refused in one line
    naming the first one's pid; the lock goes with a killed driver (the kernel drops it)."""
    import signal
    import subprocess
    import sys

    from orchestrator.settings import SweepSettings, save_settings
    from orchestrator.tune import sweep_lock
    from search_spaces import get_space

    storage = in_tmp / "runs"
    settings = SweepSettings(space=get_space("smoke").to_dict(), name="busy", storage=str(storage),
                             tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")  # fmt: skip
    save_settings(settings)
    (storage / "busy" / "tuner.pkl").write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from orchestrator.tune import sweep_lock\n"
         "with sweep_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
         str(storage / "busy")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        argv = ["sweep", "--resume", "--name", "busy", "--storage", str(storage)]
        fails_with(capsys, argv, "sweep 'busy' is running in another process", str(holder.pid))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with sweep_lock(storage / "busy"):  # free again; and this process's own second try fails
        from trainables.errors import InputError

        with (
            pytest.raises(InputError, match="running in another process"),
            sweep_lock(storage / "busy"),
        ):
            pass
    fresh = in_tmp / "new-storage" / "sweep"
    with sweep_lock(fresh):  # a sweep refused after Ray started: the folders it made go
        pass
    assert not (in_tmp / "new-storage").exists()
    with sweep_lock(fresh):
        (fresh / "tuner.pkl").write_bytes(b"")
    assert (fresh / "tuner.pkl").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--set", "epochs=2"], "--set/--data-root"),
        (["--search", "grid", "--scheduler", "asha"], "--scheduler"),
        (["--strategy", "adaptive"], "--strategy"),
        (["--search", "optuna", "--num-samples", "3"], "--num-samples"),
        (["--set", "lr=0.5", "--set", "seed=1"], "--set/--data-root"),
    ],
)
def test_resume_refuses_flags_that_would_change_the_sweep(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    """A resumed sweep runs on its saved settings (here an Optuna sweep of 4 samples): a flag
    that would change them is refused in one line instead of being ignored; one that repeats
    a saved value is fine."""
    from orchestrator.commands.sweep import check_resume_flags, load_space, resume_settings
    from orchestrator.commands.sweep_checks import check_numbers
    from orchestrator.settings import SweepSettings, save_settings
    from search_spaces import get_space

    storage = in_tmp / "spectral_sweep_runs"
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    saved = SweepSettings(space=get_space("smoke").to_dict(), name="opt", storage=str(storage), tracking_uri=uri,
                          search="optuna", num_samples=4)  # fmt: skip
    save_settings(saved)
    (storage / "opt" / "tuner.pkl").write_bytes(b"")
    argv = ["sweep", "--resume", "--name", "opt", "--storage", str(storage), *flags]
    fails_with(capsys, argv, "--resume continues sweep 'opt'", named)
    args = build_parser().parse_args([*argv[:6], "--search", "optuna", "--num-samples", "4"])
    check_numbers(args)
    check_resume_flags(args, saved)  # the saved values, repeated
    assert resume_settings(args, storage).num_samples == 4
    with_epochs = dataclasses.replace(saved, space=load_space(build_parser().parse_args(
        ["sweep", "--space", "smoke", "--set", "epochs=2"])).to_dict())  # fmt: skip
    again = build_parser().parse_args([*argv[:6], "--set", "epochs=2"])
    check_resume_flags(again, with_epochs)  # a sweep started with --set epochs=2: the same


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [  # before: an empty value fell back to the default; a root for generated data was ignored
        (["sweep", "--space", "smoke", "--name", ""], "--name '' is empty"),
        (["demo", "--name", ""], "--name '' is empty"),
        (["sweep", "--space", "smoke", "--tracking-uri", ""], "--tracking-uri '' is empty"),
        (["runs", "--experiment", "x", "--tracking-uri", " "], "--tracking-uri ' ' is empty"),
        (
            ["sweep", "--space", "smoke", "--dry-run", "--data-root", "synthetic-smooth=/x"],
            "data set 'synthetic-smooth' is generated from the seed",
        ),
        (
            ["spectrum", "--dataset", "synthetic-fine", "--data-root", "/x", "--out", "o"],
            "data set 'synthetic-fine' is generated from the seed",
        ),
    ],
)
def test_empty_names_and_roots_that_cannot_apply(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    fails_with(capsys, argv, fragment)
    assert not list(in_tmp.iterdir())  # nothing made


def test_runs_command_bad_input(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_with(capsys, ["runs", "--experiment", "x"], "no MLflow database")
    fails_with(
        capsys,
        ["runs", "--experiment", "x", "--tracking-uri", f"http://127.0.0.1:{closed_port()}"],
        "unreachable",
    )


def test_resources_this_machine_cannot_hold(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    too_many = str((os.cpu_count() or 1) + 1)
    fails_with(capsys, ["sweep", "--space", "smoke", "--cpus-per-trial", too_many], "CPUs")
    import torch

    gpus = str(torch.cuda.device_count() + 1)
    fails_with(capsys, ["sweep", "--space", "smoke", "--gpus-per-trial", gpus], "CUDA GPUs")


def test_a_trial_without_a_gpu_share_runs_on_the_cpu() -> None:
    """Ray leaves CUDA_VISIBLE_DEVICES alone for an actor that asked for no GPU, so `auto`
    would find every GPU of the machine: under Ray it means the CPU unless Ray assigned one."""
    from orchestrator.tune import trial_device
    from trainables.errors import InputError

    assert trial_device("auto", []) == "cpu"
    assert trial_device("cpu", []) == "cpu"
    assert trial_device("auto", ["0"]) == "auto"  # resolved to the assigned GPU in the trial
    assert trial_device("cuda", ["1"]) == "cuda"
    assert trial_device("cpu", ["0"]) == "cpu"
    with pytest.raises(InputError, match="assigned this trial no GPU"):
        trial_device("cuda", [])


def test_new_sweep_refuses_an_experiment_with_runs(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis.mlflow_runs import runs_frame
    from orchestrator import store, uris

    uri = uris.default_tracking_uri(in_tmp)
    client = store.make_client(uri)
    experiment = store.ensure_experiment(client, "smoke", uri)
    client.create_run(experiment)
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--tracking-uri", uri],
        "'smoke'",
        "already holds runs",
    )
    assert len(runs_frame(uri, "smoke")) == 1  # nothing added, nothing lost


def test_estimate_only_flags_need_the_strategy(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fails_with(capsys, ["sweep", "--space", "smoke", "--confirm"], "--confirm needs --strategy")
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--strategy", "estimate", "--search", "optuna"],
        "--strategy estimate",
    )
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--strategy", "estimate", "--estimator", "missing.json"],
        "missing.json",
    )
    fails_with(
        capsys,
        ["sweep", "--space", "smoke", "--strategy", "estimate", "--max-drop", "1.5"],
        "--max-drop 1.5",
    )
