"""The trial runner on a tiny backbone and synthetic data: real training, real evaluation."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from trainables.checkpoint import CHECKPOINT_FILE
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.grids import native_grid_size
from trainables.trial import TrialDiverged, TrialReport, evaluate_checkpoint, run_trial

TINY = {
    "model": "deeplabv3plus",
    "backbone": "resnet18",
    "dataset": "synthetic-smooth",
    "num_classes": 3,
    "input_size": 33,
    "epochs": 2,
    "batch_size": 4,
    "lr": 0.01,
    "train_length": 8,
    "eval_length": 4,
    "device": "cpu",
    "seed": 3,
}


def tiny(**overrides: object) -> dict[str, object]:
    return {**TINY, **overrides}


def test_config_from_strings_and_round_trip() -> None:
    cfg = TrialConfig.from_dict(
        {
            "lrg": "7",
            "prune_rate": "0.2",
            "annotation_nu_max": "None",
            "amp": "false",
            "input_size": "65",
            "eval_lrgs": "5,9",
        }
    )
    assert cfg.lrg == 7 and cfg.prune_rate == 0.2 and cfg.annotation_nu_max is None
    assert cfg.amp is False and cfg.eval_lrgs == (5, 9)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("lrg", 2, "lrg=2"),
        ("lrg", 200, "lrg=200"),
        ("prune_rate", 0.95, "prune_rate=0.95"),
        ("decoder_prune_rate", -0.1, "decoder_prune_rate=-0.1"),
        ("annotation_nu_max", -1, "annotation_nu_max=-1"),
        ("model", "unet", "model='unet'"),
        ("dataset", "imagenet", "dataset='imagenet'"),
        ("lr", "fast", "lr='fast'"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(
    field: str, value: object, fragment: str
) -> None:
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        TrialConfig.from_dict({field: value})


def test_config_rejects_num_classes_that_disagree_with_the_data_set() -> None:
    with pytest.raises(InputError, match="num_classes=20 disagrees with data set 'voc'"):
        TrialConfig.from_dict({"dataset": "voc", "num_classes": 20})


def test_config_unknown_key_lists_fields() -> None:
    with pytest.raises(InputError, match="unknown trial setting\\(s\\) lrg_size"):
        TrialConfig.from_dict({"lrg_size": 9})


def test_config_validates_against_the_registries_without_torch() -> None:
    """``trainables.config`` (imported by ``analysis``) checks model and data-set names against
    the torch-free registries the factories use, and imports no torch."""
    code = (
        "import sys, trainables.config as c; "
        "print('torch' in sys.modules, tuple(c.MODELS), c.DATASET_NAMES)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    from trainables.data import list_datasets
    from trainables.models import list_models

    assert out.stdout.strip() == f"False {tuple(list_models())} {tuple(list_datasets())}"


def test_native_grid_matches_paper() -> None:
    assert native_grid_size(513) == 129
    assert native_grid_size(65) == 17


def _weights_and_rng(model: object) -> tuple[dict[str, object], object]:
    import torch

    assert isinstance(model, torch.nn.Module)
    return {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()


def _same(a: tuple[dict[str, object], object], b: tuple[dict[str, object], object]) -> bool:
    import torch

    weights_a, rng_a = a
    weights_b, rng_b = b
    return (
        weights_a.keys() == weights_b.keys()
        and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)  # type: ignore[arg-type]
        and torch.equal(rng_a, rng_b)  # type: ignore[arg-type]
    )


def test_a_network_copied_in_a_reused_process_is_the_one_a_build_makes() -> None:
    """Checked against ``build_model`` called directly: a trial that finds its untrained network
    kept by this process gets the same weights and leaves the RNG where a build leaves it, and
    what a trial does to its copy never reaches the next one."""
    import torch

    from trainables.models import build_model
    from trainables.trial_setup import _NETWORKS, KEPT_NETWORKS, build_network, seed_everything

    cfg = TrialConfig.from_dict(tiny(model="dan", lrg=5))
    cpu = torch.device("cpu")
    _NETWORKS.clear()
    seed_everything(11)
    built = _weights_and_rng(build_model("dan", backbone="resnet18", num_classes=3))
    seed_everything(11)
    first = build_network(cfg, 3, cpu)  # built, and kept
    assert _same(_weights_and_rng(first), built) and len(_NETWORKS) == 1
    with torch.no_grad():
        for parameter in first.parameters():
            parameter.add_(1.0)  # the first trial trains its copy
    seed_everything(11)
    second = build_network(cfg, 3, cpu)  # copied
    assert second.lrg == 5 and _same(_weights_and_rng(second), built)
    seed_everything(12)  # another RNG state: other weights, built again
    third = _weights_and_rng(build_network(cfg, 3, cpu))
    assert not _same(third, built)
    seed_everything(13)
    build_network(cfg, 3, cpu)
    assert len(_NETWORKS) == KEPT_NETWORKS


@pytest.mark.slow
def test_trial_reports_every_metric_and_is_deterministic() -> None:
    reports: list[TrialReport] = []
    first = run_trial(tiny(lrg=5), report=reports.append)
    second = run_trial(tiny(lrg=5))
    assert [r.epoch for r in reports] == [0, 1]
    assert reports[-1].final and not reports[0].final
    metrics = first.metrics
    for key in (
        "loss",
        "train_loss",
        "miou",
        "boundary_iou",
        "pixel_acc",
        "gflops",
        "gmacs",
        "params",
        "fpi",
        "lrg",
        "nu_max",
        "native_lrg",
        "r_ce_lrg",
    ):
        assert key in metrics, key
    assert metrics["lrg"] == 5 and metrics["nu_max"] == 2 and metrics["native_lrg"] == 9
    assert 0 <= metrics["miou"] <= 1 and math.isfinite(metrics["loss"])
    assert metrics["fpi"] == pytest.approx(metrics["gflops"] / metrics["miou"])
    assert any(k.startswith("r_ce_nu") for k in metrics)
    assert list(reports[-1].spectrum.columns[:3]) == ["k", "band_profile", "r_ce"]
    assert len(reports[-1].per_class_iou) == 3
    # The same config twice gives identical metrics (CPU determinism).
    assert second.metrics.keys() == metrics.keys()
    for key, value in metrics.items():
        if key not in ("epoch_seconds", "train_seconds"):
            assert second.metrics[key] == value, key


@pytest.mark.slow
def test_truncation_lowers_flops_and_changes_the_network() -> None:
    native = run_trial(tiny(epochs=1))
    truncated = run_trial(tiny(epochs=1, lrg=3))
    assert truncated.metrics["gflops"] < native.metrics["gflops"]
    # r_ce_lrg is the run's own R_ce at the grid's band (s - 1) / 2: small but not 0 at the
    # native grid (paper Table 1: 0.008 at nu_max 64 on PASCAL); 0 only at the image's band.
    for result, grid in ((native, native_grid_size(33)), (truncated, 3)):
        frame = result.reports[-1].spectrum.set_index("k")
        assert result.metrics["r_ce_lrg"] == pytest.approx(frame.loc[(grid - 1) // 2, "r_ce"])
        assert frame["r_ce"].iloc[-1] == 0.0
    assert native.metrics["nu_max"] == (native_grid_size(33) - 1) // 2
    assert truncated.metrics["lrg"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_checkpoint_matches_an_uninterrupted_run(
    tmp_path: object, workers: int
) -> None:
    """Also with loader worker processes (a GPU trial's default): each epoch's workers are
    seeded from the (seed, epoch) generator, so a resumed epoch draws what it drew before."""
    from pathlib import Path

    class Interrupted(Exception):
        pass

    def crash_after_first_evaluation(report: TrialReport) -> None:
        raise Interrupted(report.epoch)

    ckpt = Path(str(tmp_path)) / "ckpt"
    config = tiny(epochs=2, prune_rate=0.2, decoder_prune_rate=0.2, loader_workers=workers)
    full = run_trial(config)
    with pytest.raises(Interrupted):  # the same trial dies after its first checkpoint
        run_trial(config, report=crash_after_first_evaluation, checkpoint_dir=ckpt)
    assert (ckpt / CHECKPOINT_FILE).exists()
    resumed_reports: list[TrialReport] = []
    resumed = run_trial(
        config,
        report=resumed_reports.append,
        checkpoint_dir=ckpt,
    )
    assert [r.epoch for r in resumed_reports] == [1]  # epoch 0 was not trained again
    for key in ("miou", "loss", "train_loss", "boundary_iou", "gflops"):
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], rel=1e-5), key


@pytest.mark.gpu
def test_a_gpu_trial_resumes_and_its_checkpoint_evaluates_on_the_cpu(tmp_path: Path) -> None:
    """On CUDA (bf16 autocast, channels_last, pinned loader workers): a trial interrupted after
    its first checkpoint resumes to the uninterrupted result, its checkpoint keeps the random
    state of its own GPU only, and the weights evaluate on the CPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from trainables.checkpoint import read_checkpoint

    class Interrupted(Exception):
        pass

    def crash(report: TrialReport) -> None:
        raise Interrupted(report.epoch)

    config = tiny(epochs=3, eval_every=1, device="cuda", amp=True, prune_rate=0.2)
    full = run_trial(config)
    with pytest.raises(Interrupted):
        run_trial(config, report=crash, checkpoint_dir=tmp_path)
    assert len(read_checkpoint(tmp_path / CHECKPOINT_FILE)["rng_cuda"]) == 1
    resumed = run_trial(config, checkpoint_dir=tmp_path)
    for key in ("miou", "loss", "train_loss"):  # GPU kernels are not bit-exact
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], rel=1e-2, abs=1e-3), key
    on_cpu = evaluate_checkpoint(tmp_path, [3], {"device": "cpu"})
    assert on_cpu[3]["miou"] >= 0 and math.isfinite(on_cpu[3]["loss"])


@pytest.mark.slow
def test_pruned_trial_counts_compact_flops() -> None:
    dense = run_trial(tiny(epochs=1))
    pruned = run_trial(tiny(epochs=1, prune_rate=0.4, decoder_prune_rate=0.2))
    assert pruned.metrics["gflops"] < dense.metrics["gflops"]
    assert pruned.metrics["params"] < dense.metrics["params"]


@pytest.mark.slow
def test_blockwise_training_and_posthoc_truncation(tmp_path: object) -> None:
    from pathlib import Path

    ckpt = Path(str(tmp_path))
    reports: list[TrialReport] = []
    cfg = tiny(epochs=2, eval_every=1, annotation_nu_max=2, eval_lrgs=[3, 5])
    result = run_trial(cfg, report=reports.append, checkpoint_dir=ckpt)
    assert "r_ce_annotation" in result.metrics
    assert set(result.posthoc) == {3, 5}
    # the post-hoc evaluation travels with the final report (Tune and MLflow get it there)
    assert [r.posthoc for r in reports] == [{}, result.posthoc] and reports[-1].final
    assert result.posthoc[3]["gflops"] < result.posthoc[5]["gflops"]
    again = evaluate_checkpoint(ckpt, [3, 5])
    assert again[3]["miou"] == pytest.approx(result.posthoc[3]["miou"])


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    ckpt = Path(str(tmp_path))
    run_trial(tiny(epochs=1), checkpoint_dir=ckpt)
    with pytest.raises(InputError, match=r"checkpoint .* is for architecture"):
        run_trial(tiny(epochs=2, model="dan"), checkpoint_dir=ckpt)


@pytest.mark.slow
def test_checkpoint_of_another_trial_is_refused(tmp_path: object) -> None:
    """Same architecture, other training: resuming would report the checkpoint's weights under
    this config's settings (before: accepted, the JSON said lr 0.5 for weights trained at
    0.01). Run-only settings may differ."""
    from pathlib import Path

    ckpt = Path(str(tmp_path))
    first = run_trial(tiny(epochs=1), checkpoint_dir=ckpt)
    for change in ({"lr": 0.5}, {"dataset": "synthetic-fine"}, {"lrg": 5}):
        with pytest.raises(InputError, match=rf"other settings \({next(iter(change))}: "):
            run_trial(tiny(epochs=1, **change), checkpoint_dir=ckpt)
    again = run_trial(tiny(epochs=1, num_threads=2, eval_every=1), checkpoint_dir=ckpt)
    assert again.metrics["miou"] == pytest.approx(first.metrics["miou"], rel=1e-6)


@pytest.mark.slow
def test_a_finished_trial_run_again_reports_its_final_metrics(tmp_path: object) -> None:
    from pathlib import Path

    ckpt = Path(str(tmp_path))
    first = run_trial(tiny(epochs=1), checkpoint_dir=ckpt)
    again_reports: list[TrialReport] = []
    # run again with post-hoc LRGs: the trained model is evaluated, nothing is retrained
    again = run_trial(
        tiny(epochs=1, eval_lrgs=[5, 3]), report=again_reports.append, checkpoint_dir=ckpt
    )
    assert [r.epoch for r in again_reports] == [0] and again_reports[0].final
    for key in ("miou", "boundary_iou", "gflops", "fpi", "loss"):
        assert again.metrics[key] == pytest.approx(first.metrics[key], rel=1e-6), key
    assert math.isnan(again.metrics["train_loss"])  # nothing was trained again
    assert sorted(again.posthoc) == [3, 5]
    assert again.posthoc[3]["gflops"] < again.posthoc[5]["gflops"] < again.metrics["gflops"]


@pytest.mark.slow
def test_the_final_checkpoint_holds_the_weights_only(tmp_path: object) -> None:
    """Mid-trial checkpoints carry what resuming needs (momentum, schedule, RNG); the last
    one only the weights, about half the bytes, and it cannot be trained on from."""
    from pathlib import Path

    from trainables.checkpoint import read_checkpoint

    ckpt = Path(str(tmp_path))
    sizes: dict[int, int] = {}

    def note_size(report: TrialReport) -> None:
        assert report.checkpoint_path is not None
        sizes[report.epoch] = (report.checkpoint_path / CHECKPOINT_FILE).stat().st_size

    result = run_trial(tiny(epochs=2), report=note_size, checkpoint_dir=ckpt)
    assert sizes[1] < 0.6 * sizes[0]  # SGD momentum is one more copy of the weights
    state = read_checkpoint(ckpt / CHECKPOINT_FILE)
    assert state["epoch"] == 1 and "optimizer" not in state and "rng_cpu" not in state
    native = native_grid_size(33)  # the weights alone evaluate as the trial did
    again = evaluate_checkpoint(ckpt, [native])
    assert again[native]["miou"] == pytest.approx(result.metrics["miou"], rel=1e-6)
    with pytest.raises(InputError, match=r"weights only .* epochs=3"):
        run_trial(tiny(epochs=3), checkpoint_dir=ckpt)


def test_a_corrupt_checkpoint_is_one_input_error(tmp_path: object) -> None:
    from pathlib import Path

    ckpt = Path(str(tmp_path))
    (ckpt / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"checkpoint .* is not a loadable trial checkpoint"):
        run_trial(tiny(epochs=1), checkpoint_dir=ckpt)
    with pytest.raises(InputError, match="is not a loadable trial checkpoint"):
        evaluate_checkpoint(ckpt, [5])


def test_a_single_training_image_is_refused() -> None:
    with pytest.raises(InputError, match="1 training image"):
        run_trial(tiny(train_length=1))


@pytest.mark.slow
def test_last_batch_of_one_is_dropped() -> None:
    result = run_trial(tiny(epochs=1, train_length=5, batch_size=4))  # 4 + 1: BatchNorm-safe
    assert 0.0 <= result.metrics["miou"] <= 1.0


@pytest.mark.slow
def test_nan_loss_stops_the_trial_with_the_reason() -> None:
    with pytest.raises(TrialDiverged, match=r"training loss became (nan|inf)"):
        run_trial(tiny(epochs=3, lr=1e30, batch_size=2))


@pytest.mark.slow
def test_train_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "train",
            "--model",
            "dan",
            "--backbone",
            "resnet18",
            "--dataset",
            "synthetic-fine",
            "--num-classes",
            "3",
            "--input-size",
            "33",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--train-length",
            "4",
            "--eval-length",
            "4",
            "--lrg",
            "5",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("miou", "boundary_iou", "gflops", "fpi", "r_ce"):
        assert key in out
    assert isinstance(out["r_ce"], dict) and all(k.startswith("nu") for k in out["r_ce"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--lrg", "1"], "lrg=1 is out of range"),
        (["--prune-rate", "0.95"], "prune_rate=0.95 is out of range"),
        (["--annotation-nu-max", "-2"], "annotation_nu_max=-2 is out of range"),
        (["--model", "segformer"], "model='segformer' is not one of"),
        (["--dataset", "ade20k"], "dataset='ade20k' is not one of"),
        # before: a ZeroDivisionError traceback (negative power), or a NaN loss and exit 0
        (["--poly-power", "-1"], "poly_power=-1.0 is out of range; expected [0.0, inf)"),
        (["--poly-power", "nan"], "poly_power=nan is out of range"),
        (["--lr", "inf"], "lr=inf is out of range; expected (0.0, inf)"),
        (["--weight-decay", "inf"], "weight_decay=inf is out of range"),
    ],
)
def test_train_cli_bad_input_is_one_line_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--input-size", "65", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_loader_workers_default_by_device_and_are_run_only() -> None:
    import torch

    from trainables.trial_setup import GPU_LOADER_WORKERS, loader_workers

    cfg = TrialConfig.from_dict({"model": "dan", "backbone": "resnet18", "input_size": 33})
    assert loader_workers(cfg, torch.device("cpu")) == 0
    assert loader_workers(cfg, torch.device("cuda")) == min(GPU_LOADER_WORKERS, os.cpu_count() or 1)
    two = TrialConfig.from_dict({**cfg.to_dict(), "loader_workers": 2})
    assert loader_workers(two, torch.device("cpu")) == 2
    assert two.key == cfg.key  # how data are loaded is not what is trained
    with pytest.raises(InputError, match="loader_workers"):
        TrialConfig.from_dict({**cfg.to_dict(), "loader_workers": -1})


@pytest.mark.slow
def test_a_trial_with_loader_workers_is_deterministic() -> None:
    config = {
        "model": "dan", "backbone": "resnet18", "dataset": "synthetic-smooth", "input_size": 33,
        "num_classes": 3, "batch_size": 4, "epochs": 2, "train_length": 8, "eval_length": 4,
        "loader_workers": 2, "device": "cpu",
    }  # fmt: skip
    first, second = run_trial(config), run_trial(config)
    for key in ("miou", "loss", "train_loss"):
        assert first.metrics[key] == second.metrics[key], key


@pytest.mark.slow
def test_how_often_a_trial_evaluates_does_not_change_what_it_trains() -> None:
    """``eval_every`` is run-only: evaluating after every epoch or only after the last trains
    the same network (the evaluation loader draws nothing from the global RNG that dropout
    uses) and times the same epochs (``train_seconds`` sums them, ``epoch_seconds`` averages)."""
    every = run_trial(tiny(epochs=3, eval_every=1))
    last = run_trial(tiny(epochs=3, eval_every=3))
    assert [r.epoch for r in every.reports] == [0, 1, 2] and [r.epoch for r in last.reports] == [2]
    for key in ("miou", "loss", "train_loss", "boundary_iou", "r_ce_lrg"):
        assert last.metrics[key] == every.metrics[key], key
    assert last.reports[0].spectrum.equals(every.reports[-1].spectrum)
    only = last.metrics
    assert only["train_seconds"] == pytest.approx(3 * only["epoch_seconds"])
    for report in every.reports:  # one epoch per report
        assert report.metrics["train_seconds"] == report.metrics["epoch_seconds"] > 0
    assert TrialConfig.from_dict(tiny(eval_every=3)).key == TrialConfig.from_dict(tiny()).key


def test_checkpoints_go_through_shared_memory_only_when_it_has_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainables import checkpoint

    monkeypatch.setattr(checkpoint, "SCRATCH_MIN_FREE", 0)
    assert checkpoint.scratch_dir() == "/dev/shm"  # Linux: a tmpfs every process may write
    monkeypatch.setattr(checkpoint, "SCRATCH_MIN_FREE", 1 << 62)  # more than any machine has
    assert checkpoint.scratch_dir() is None  # the system temp dir, as a small Docker shm gets


def test_scratch_folders_of_killed_trial_processes_are_removed(tmp_path: Path) -> None:
    """A trial process killed mid-trial (OOM, kill -9) leaves its scratch folder (in /dev/shm:
    memory); the next trial's process removes it, and only it."""
    from trainables import checkpoint

    make = (
        "import os, sys; from pathlib import Path; from trainables.checkpoint import scratch_folder;"
        "folder = scratch_folder(sys.argv[1]); (Path(folder.name) / 'checkpoint.pt').write_bytes"
        "(bytes(4096)); print(folder.name, flush=True); sys.stdin.readline()"
    )

    def trial_process() -> tuple[subprocess.Popen[str], Path]:
        process = subprocess.Popen(
            [sys.executable, "-c", make, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        return process, Path(process.stdout.readline().strip())

    running, running_folder = trial_process()
    killed, killed_folder = trial_process()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    other_use = tmp_path / "spectral-sweep-artifacts-x1"  # another of the project's temp names
    other_use.mkdir()
    try:
        space = os.readlink("/proc/self/ns/pid").strip("pid:[]")
        owner = f"{checkpoint.SCRATCH_PREFIX}{space}-{killed.pid}-"
        assert killed_folder.name.startswith(owner)
        elsewhere = tmp_path / f"{checkpoint.SCRATCH_PREFIX}1-{killed.pid}-x"  # pid namespace 1
        elsewhere.mkdir()  # a container sharing /dev/shm: its pids are not ours to look up
        assert killed_folder.is_dir() and running_folder.is_dir()
        with checkpoint.scratch_folder(str(tmp_path)) as mine:  # a new trial's folder
            assert not killed_folder.exists()  # removed before the new one was made
            assert running_folder.is_dir() and other_use.is_dir() and Path(mine).is_dir()
            assert elsewhere.is_dir()
        assert checkpoint.remove_stale_scratch(str(tmp_path)) == []
    finally:
        assert running.stdin is not None
        running.stdin.write("\n")
        running.stdin.close()
        running.wait(timeout=30)
    assert not running_folder.exists()  # an orderly end removes its own folder
