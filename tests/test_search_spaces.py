"""Search spaces: the built-in grids, the file schema (YAML/TOML), and errors that name the field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from search_spaces import (
    expand,
    get_space,
    list_spaces,
    load_space_file,
    resolve_space,
    space_from_dict,
)
from trainables.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[1] / "search_spaces" / "example.yaml"


def values(trials: list[dict[str, object]], key: str) -> set[object]:
    return {t.get(key) for t in trials}


def test_registry_lists_the_four_spaces() -> None:
    assert list_spaces() == ["paper-truncation", "paper-annotation", "demo", "smoke"]
    with pytest.raises(InputError, match=r"unknown search space 'nope'; choose from: .*demo"):
        get_space("nope")


@pytest.mark.parametrize("name", ["paper-truncation", "paper-annotation", "demo", "smoke"])
def test_every_builtin_trial_is_a_valid_trial_config(name: str) -> None:
    trials = expand(get_space(name))
    configs = get_space(name).trials()
    assert len({repr(sorted(t.items())) for t in trials}) == len(trials)  # no duplicates
    assert all(c.model in ("deeplabv3plus", "dan") for c in configs)


def test_paper_truncation_grid_and_per_dataset_settings() -> None:
    trials = expand(get_space("paper-truncation"))
    assert len(trials) == 2 * 3 * 7 * 4
    assert values(trials, "lrg") == {129, 97, 81, 65, 49, 33, 17}
    assert values(trials, "prune_rate") == {0.0, 0.2, 0.4, 0.6}
    per_dataset = {
        "voc": (0.0007, 100, 21),
        "deepglobe": (0.007, 600, 7),
        "cityscapes": (0.001, 200, 19),
    }
    for t in trials:
        assert (t["lr"], t["epochs"], t["num_classes"]) == per_dataset[str(t["dataset"])]
        assert t["decoder_prune_rate"] == (0.2 if float(t["prune_rate"]) > 0 else 0.0)
        assert (t["backbone"], t["input_size"], t["batch_size"]) == ("resnet101", 513, 8)


def test_paper_annotation_grid() -> None:
    trials = expand(get_space("paper-annotation"))
    assert len(trials) == 2 * 3 * 4
    assert values(trials, "annotation_nu_max") == {256, 32, 16, 8}
    assert values(trials, "lrg") == {None}  # native grid
    configs = get_space("paper-annotation").trials()
    native = [c for c in configs if c.annotation_nu_max == 256]
    assert native and not any(c.uses_blockwise_labels for c in native)


def test_demo_exercises_every_axis_and_stays_small() -> None:
    trials = expand(get_space("demo"))
    assert values(trials, "model") == {"deeplabv3plus", "dan"}
    assert values(trials, "dataset") == {"synthetic-smooth", "synthetic-fine"}
    assert len(values(trials, "lrg") - {None}) >= 4
    assert len(values(trials, "prune_rate")) >= 2
    assert len(values(trials, "annotation_nu_max") - {None}) >= 3
    assert len(trials) < 2 * 2 * 4 * 2 * 4  # a union of sub-grids, not the cross product
    assert all(c.input_size == 65 for c in get_space("demo").trials())


def test_smoke_has_at_most_four_short_trials() -> None:
    trials = get_space("smoke").trials()
    assert 1 <= len(trials) <= 4
    assert all(c.epochs == 1 and c.dataset.startswith("synthetic") for c in trials)


def test_subgrids_are_a_union_without_duplicates_and_axes_cover_them() -> None:
    space = space_from_dict(
        {
            "name": "u",
            "fixed": {"input_size": 33, "backbone": "resnet18"},
            "grids": [{"model": ["dan"], "lrg": [9, 5]}, {"model": ["dan"], "lrg": [5, 3]}],
        }
    )
    assert [t["lrg"] for t in expand(space)] == [9, 5, 3]
    assert space.varying_keys() == ["lrg"]


def test_example_file_and_toml_give_the_same_trials(tmp_path: Path) -> None:
    from_yaml = load_space_file(EXAMPLE)
    toml = tmp_path / "example.toml"
    toml.write_text(
        textwrap.dedent(
            """
            name = "example-lrg"
            description = "same as the YAML example"
            [fixed]
            backbone = "resnet18"
            dataset = "synthetic-fine"
            input_size = 65
            num_classes = 4
            epochs = 2
            batch_size = 8
            lr = 0.02
            train_length = 16
            eval_length = 8
            [[grids]]
            model = ["deeplabv3plus", "dan"]
            lrg = [17, 9, 5]
            prune_rate = [0.0]
            [[grids]]
            model = ["deeplabv3plus"]
            lrg = [17, 5]
            prune_rate = [0.4]
            [derived.prune_rate]
            "0.0" = { decoder_prune_rate = 0.0 }
            "0.4" = { decoder_prune_rate = 0.2 }
            """
        )
    )
    from_toml = load_space_file(toml)
    assert expand(from_toml) == expand(from_yaml)
    assert len(expand(from_yaml)) == 8
    assert {t["decoder_prune_rate"] for t in expand(from_yaml) if t["prune_rate"] == 0.4} == {0.2}


def test_round_trip_through_plain_data() -> None:
    for name in list_spaces():
        space = get_space(name)
        assert expand(space_from_dict(space.to_dict())) == expand(space)


def test_overrides_and_data_roots(tmp_path: Path) -> None:
    space = get_space("paper-annotation").with_overrides({"epochs": "1"})
    assert values(expand(space), "epochs") == {"1"}
    assert space.trials()[0].epochs == 1
    rooted = space.with_data_roots({"voc": str(tmp_path)})
    voc = [t for t in expand(rooted) if t["dataset"] == "voc"]
    assert values(voc, "data_root") == {str(tmp_path)}
    assert values([t for t in expand(rooted) if t["dataset"] != "voc"], "data_root") == {None}
    with pytest.raises(InputError, match=r"data set 'pascal' is not in space"):
        space.with_data_roots({"pascal": "/x"})


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
name: t
fixed: {input_size: 33, backbone: resnet18}
"""


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (GOOD + "grid: {model: [dan]}\ncolour: red\n", ["unknown field 'colour'", "allowed: name"]),
        (GOOD + "grid: {modle: [dan]}\n", ["grid: unknown axis 'modle'", "allowed:", "model"]),
        (GOOD + "grid: {model: dan}\n", ["grid.model", "not a non-empty list"]),
        (GOOD + "grid: {lrg: [9, 11]}\n", ["trial 1 (lrg=11)", "lrg=11 is out of range", "[3, 9]"]),
        (GOOD + "grid: {model: [unet]}\n", ["trial 0 (model='unet')", "not one of: deeplabv3plus"]),
        (GOOD + "grids: [{model: [dan]}, {lrg: [[1]]}]\n", ["grids[1].lrg", "is a list"]),
        (GOOD + "grid: {input_size: [33]}\n", ["fixed.input_size", "also a grid axis"]),
        (
            GOOD + "grid: {prune_rate: [0.0, 0.2]}\nderived: {prune_rate: {0.0: {}}}\n",
            ["derived.prune_rate: no entry for value 0.2", "entries: 0.0"],
        ),
        (
            GOOD + "grid: {model: [dan]}\nderived: {lrg: {9: {epochs: 2}}}\n",
            ["derived.lrg", "not a grid axis or fixed setting"],
        ),
        ("name: 'bad name'\ngrid: {model: [dan]}\n", ["name: 'bad name'", "allowed: letters"]),
        (GOOD, ["missing field 'grid'"]),
        ("grid: [\n", ["not valid YAML"]),
    ],
)
def test_bad_space_files_name_file_field_value_and_choices(
    tmp_path: Path, body: str, fragments: list[str]
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(InputError) as err:
        load_space_file(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path)) or "trial" in message
    for fragment in fragments:
        assert fragment in message


def test_file_type_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unsupported space file type '.json'"):
        load_space_file(tmp_path / "s.json")
    with pytest.raises(InputError, match=r"space file not found"):
        load_space_file(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match=r"exactly one of --space"):
        resolve_space(None, None)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_spaces_command_lists_names_counts_and_descriptions() -> None:
    result = run_cli("spaces")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "trials", "description"]
    rows = {line.split()[0]: int(line.split()[1]) for line in lines[1:]}
    assert rows == {"paper-truncation": 168, "paper-annotation": 24, "demo": 26, "smoke": 4}


def test_spaces_show_prints_a_loadable_file(tmp_path: Path) -> None:
    result = run_cli("spaces", "--show", "paper-truncation")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "copy.yaml"
    path.write_text(result.stdout)
    assert expand(load_space_file(path)) == expand(get_space("paper-truncation"))


def test_dry_run_prints_the_trials_without_importing_ray() -> None:
    code = (
        "import sys; from orchestrator.cli import main; rc = main(['sweep', '--space', 'demo', "
        "'--dry-run']); assert 'ray' not in sys.modules, 'ray imported'; sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = lines[2].split()
    assert header[0] == "#" and {"model", "dataset", "lrg", "prune_rate"} <= set(header)
    assert lines.index("26 trials") == 3 + 26  # the table, then the compute estimate
    assert any(line.startswith("total: ") for line in lines[3 + 26 :])
