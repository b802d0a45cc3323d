"""Adapter configs: dict and YAML round trips, unknown keys, bad values, build_adapter."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from unilk.adapters import ADAPTERS, AudioConfig, VideoConfig, build_adapter, config_from_dict
from unilk.errors import ConfigError


@pytest.mark.parametrize("modality", sorted(ADAPTERS))
def test_round_trip_through_dict_and_yaml(modality: str) -> None:
    config_cls, adapter_cls = ADAPTERS[modality]
    config = config_cls()
    assert config_cls.from_dict(config.to_dict()) == config
    assert config_cls.from_yaml(config.to_yaml()) == config
    assert config_from_dict(config.to_dict()) == config
    adapter = build_adapter(modality, config.to_dict())
    assert isinstance(adapter, adapter_cls)
    assert adapter.config == config
    assert adapter.in_chans in (1, 3)
    # DataLoader workers started with 'spawn' receive the adapter pickled
    assert pickle.loads(pickle.dumps(adapter)).config == config


def test_changed_values_survive_yaml() -> None:
    config = VideoConfig(num_frames=8, grid_rows=2, grid_cols=4, layout="official", mean=(0.5, 0.5, 0.5))
    back = VideoConfig.from_yaml(config.to_yaml())
    assert back == config
    assert back.mean == (0.5, 0.5, 0.5)


def test_unknown_keys_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"num_mel_binz.*valid keys.*num_mel_bins"):
        AudioConfig.from_dict({"num_mel_binz": 64})
    with pytest.raises(ConfigError, match="valid keys"):
        build_adapter("points", {"resolution": 224})


def test_bad_values_and_wrong_modality() -> None:
    with pytest.raises(ConfigError, match="length_policy"):
        AudioConfig(length_policy="stretch")
    with pytest.raises(ConfigError, match="target_frames"):
        AudioConfig(target_frames=0)
    with pytest.raises(ConfigError, match="modality 'video'"):
        AudioConfig.from_dict(VideoConfig().to_dict())
    with pytest.raises(ConfigError, match="expected one of"):
        build_adapter("smell")
    with pytest.raises(ConfigError, match="expected a AudioConfig"):
        build_adapter("audio", VideoConfig())
    with pytest.raises(ConfigError, match="grid"):
        VideoConfig(num_frames=16, grid_rows=2, grid_cols=4)
    with pytest.raises(ConfigError, match="preset"):
        AudioConfig.preset("librispeech")


@pytest.mark.parametrize("modality", sorted(ADAPTERS))
def test_a_value_of_the_wrong_type_names_the_field(modality: str) -> None:
    """Every field of every config: a value of the wrong type is a ConfigError naming the field (never a TypeError)."""
    config_cls, _ = ADAPTERS[modality]
    for name, default in config_cls().to_dict().items():
        if name == "modality":
            continue
        wrong = 7 if isinstance(default, (list, str)) else [1, 2] if not isinstance(default, list) else "x"
        with pytest.raises(ConfigError, match=rf"{config_cls.__name__}\.{name}: got .*, expected"):
            config_cls.from_dict({name: wrong})


def test_wrong_types_say_what_was_expected() -> None:
    from unilk.adapters import ImageConfig

    with pytest.raises(ConfigError, match=r"input_size: got 64, expected a list, each element an integer"):
        ImageConfig.from_dict({"input_size": 64})
    with pytest.raises(ConfigError, match=r"num_mel_bins: got '64', expected an integer \(default: 128\)"):
        AudioConfig.from_dict({"num_mel_bins": "64"})
    with pytest.raises(ConfigError, match=r"mean: got 'x', expected a number or null"):
        AudioConfig.from_dict({"mean": "x"})
    assert AudioConfig.from_dict({"max_seconds": 30}).max_seconds == 30  # an int for a float: fine


def test_import_adapters_pulls_in_no_optional_heavy_module() -> None:
    code = "import sys, unilk.adapters; print(' '.join(m for m in ('open3d', 'decord', 'librosa') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""
