"""The run schema: TrialConfig <-> MLflow params (absent stays absent), and derived settings."""

from __future__ import annotations

import dataclasses

import pytest

from search_spaces import get_space
from trainables.config import TrialConfig
from trainables.errors import InputError
from trainables.run_schema import (
    Tag,
    from_params,
    r_ce_point,
    r_ce_point_band,
    to_params,
)

CONFIGS = [
    TrialConfig(),
    TrialConfig(model="dan", input_size=65, lrg=9, prune_rate=0.4, decoder_prune_rate=0.2),
    TrialConfig(input_size=65, annotation_nu_max=4, eval_lrgs=(9, 5), extra={"length": 8}),
    TrialConfig(dataset="folder", data_root="/data/x", num_classes=5, flops_convention="paper"),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_params_round_trip(cfg: TrialConfig) -> None:
    params = to_params(cfg)
    assert all(isinstance(v, str) for v in params.values())
    assert "None" not in params.values()  # absent settings are not logged
    assert from_params(params) == cfg
    assert params["lrg_effective"] == str(cfg.effective_lrg)
    assert params["native_lrg"] == str(cfg.native_lrg)


def test_absent_params_stay_absent() -> None:
    params = to_params(TrialConfig(input_size=65))
    for name in ("lrg", "annotation_nu_max", "num_classes", "data_root", "train_length"):
        assert name not in params
    assert from_params(params).lrg is None


def test_legacy_none_strings_and_foreign_params_read_back() -> None:
    """Runs logged before the schema held every field, None as "None"."""
    legacy = {f.name: str(getattr(TrialConfig(), f.name)) for f in dataclasses.fields(TrialConfig)}
    legacy |= {"eval_lrgs": "", "extra": "{}", "lrg_effective": "129", "mlflow.note": "x"}
    assert from_params(legacy) == TrialConfig()


def test_bad_param_value_names_the_field() -> None:
    with pytest.raises(InputError, match="lrg"):
        from_params({"lrg": "large"})


def test_derived_settings() -> None:
    cfg = TrialConfig(input_size=513, lrg=65, annotation_nu_max=32)
    assert (cfg.native_lrg, cfg.effective_lrg, cfg.nu_max) == (129, 65, 32)
    assert (cfg.image_band, cfg.label_band, cfg.is_native) == (256, 32, False)
    native = TrialConfig(input_size=65)
    assert (native.effective_lrg, native.nu_max, native.is_native) == (17, 8, True)
    assert native.label_band == 32 and not native.uses_blockwise_labels
    assert native.key == TrialConfig(input_size=65, lrg=17).key  # the native grid, spelled twice


def test_names() -> None:
    assert Tag.ROLE == "spectral_sweep.role" and Tag.CONFIG_KEY == "spectral_sweep.config_key"
    assert r_ce_point(8) == "r_ce_nu8" and r_ce_point_band("r_ce_nu32") == 32
    assert r_ce_point_band("r_ce_lrg") is None


def test_space_trials_are_validated_configs_expanded_once() -> None:
    space = get_space("demo")
    trials = space.trials()
    assert all(isinstance(t, TrialConfig) for t in trials) and len(trials) == len(space) == 26
    assert space.trials() is trials  # expanded once
    assert [TrialConfig.from_dict(c) for c in space.configs()] == list(trials)
