"""The foundation: a light ``import unilk``, the console command, the error hierarchy, shipped recipes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import unilk
from unilk.cli import cli
from unilk.errors import CheckpointError, ConfigError, InputError, UnilkError, WorkerDiedError, unknown_keys_error

REPO = Path(__file__).resolve().parents[1]

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


@pytest.mark.parametrize("error", [InputError, ConfigError, CheckpointError, WorkerDiedError])
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


def _fake_tools(folder: Path, apt_exit: int) -> dict[str, str]:
    """A PATH where libusb is missing, the user is root and apt-get talks on both streams as on a fresh machine."""
    folder.mkdir()
    tools = {
        "ldconfig": "exit 0",
        "id": "echo 0",
        "apt-get": (
            'echo "Selecting previously unselected package libusb-1.0-0."\n'
            'echo "debconf: delaying package configuration, since apt-utils is not installed" >&2\n'
            f'[ "$1" = install ] && [ {apt_exit} != 0 ] && echo "E: Unable to locate package libusb-1.0-0" >&2\n'
            f'[ "$1" = install ] && exit {apt_exit}\nexit 0'
        ),
    }
    for name, body in tools.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_setup_prints_its_own_steps_and_apt_output_only_on_failure(tmp_path: Path) -> None:
    make = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "system-deps", "LDCONFIG=ldconfig"]
    quiet = subprocess.run(make, env=_fake_tools(tmp_path / "ok", 0), capture_output=True, text=True, cwd=REPO)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == ["[setup] installing libusb-1.0-0 (needed by open3d) with apt-get"]
    assert quiet.stderr == ""
    failed = subprocess.run(make, env=_fake_tools(tmp_path / "bad", 100), capture_output=True, text=True, cwd=REPO)
    assert failed.returncode != 0
    assert "[setup] apt-get failed" in failed.stdout
    assert "E: Unable to locate package libusb-1.0-0" in failed.stdout  # what failed is shown


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_setup_finds_ldconfig_outside_the_path() -> None:
    """A normal user's PATH often lacks /sbin: libusb is found all the same, not reported missing."""
    show = "show-ldconfig: ; @echo $(LDCONFIG)"
    make = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), f"--eval={show}", "show-ldconfig"]
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    ldconfig = subprocess.run(make, env=env, capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
    assert Path(ldconfig).name == "ldconfig"
    assert ldconfig.startswith("/")
