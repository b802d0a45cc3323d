"""The foundation: a light ``import unilk``, the console command, the error hierarchy, shipped recipes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

import unilk
from unilk.cli import cli
from unilk.errors import CheckpointError, ConfigError, InputError, UnilkError, unknown_keys_error

HEAVY_MODULES = ["torch", "timm", "open3d", "decord", "ray", "librosa", "matplotlib"]


def test_import_unilk_pulls_in_no_heavy_module() -> None:
    heavy = set(HEAVY_MODULES)
    code = f"import sys, unilk; print(' '.join(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_lazy_public_api_names_are_listed() -> None:
    assert {"create_model", "list_models", "reparameterize", "verify_reparam"} <= set(dir(unilk))
    with pytest.raises(AttributeError, match="no attribute 'not_a_thing'"):
        _ = unilk.not_a_thing


def test_cli_version_and_help() -> None:
    runner = CliRunner()
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert unilk.__version__ in version.output
    help_ = runner.invoke(cli, ["--help"])
    assert help_.exit_code == 0
    assert "unilk" in help_.output


def test_console_script_runs_as_module() -> None:
    out = subprocess.run([sys.executable, "-m", "unilk", "--version"], capture_output=True, text=True, check=True)
    assert unilk.__version__ in out.stdout


@pytest.mark.parametrize("error", [InputError, ConfigError, CheckpointError])
def test_errors_share_one_base(error: type[UnilkError]) -> None:
    assert issubclass(error, UnilkError)
    with pytest.raises(UnilkError):
        raise error("boom")


def test_unknown_keys_error_lists_the_valid_keys() -> None:
    err = unknown_keys_error("AudioConfig", {"num_mel_binz"}, {"num_mel_bins", "sample_rate"})
    assert isinstance(err, ConfigError)
    assert "num_mel_binz" in str(err)
    assert "num_mel_bins" in str(err)
    assert "sample_rate" in str(err)


def test_shipped_recipes_are_found() -> None:
    from unilk.recipes import list_recipes, recipe_root

    assert recipe_root().is_dir()
    names = list_recipes()
    assert all("/" in name for name in names)
