"""`unilk erf` and `unilk plot` end to end on tiny models and inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unilk.diagnostics.commands import erf, plot

# tiny models on small inputs: the trunks warn that the last-stage map is smaller than the kernels
pytestmark = pytest.mark.filterwarnings("ignore:.*last-stage map:UserWarning")


def _png_shape(path) -> tuple[int, ...]:
    from PIL import Image

    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank
    return pixels.shape


def _images(directory, n: int = 3) -> None:
    from PIL import Image

    gen = np.random.default_rng(0)
    directory.mkdir()
    for i in range(n):
        Image.fromarray(gen.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(directory / f"{i}.jpg")


def test_erf_command_two_models_side_by_side(tmp_path) -> None:
    _images(tmp_path / "imgs")
    out = tmp_path / "erf.png"
    args = ["test_unireplknet", "resnet10t", "--images", str(tmp_path / "imgs"), "--num", "2", "--size", "64",
            "--batch-size", "2", "--out", str(out), "--save-maps", str(tmp_path / "maps"), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(erf, args)
    assert result.exit_code == 0, result.output
    assert "r(99%)" in result.output
    assert "averaged over 2 input(s)" in result.output
    assert _png_shape(out) == (500, 800, 3)  # two 4×5-inch panels at 100 dpi
    saved = np.load(tmp_path / "maps" / "resnet10t.npy")
    assert saved.shape == (64, 64)
    assert saved.max() > 0

    result = CliRunner().invoke(erf, [*args, "--json", "--no-log", "--thresholds", "0.5,0.9"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)
    assert set(table) == {"test_unireplknet", "resnet10t"}
    assert [r["threshold"] for r in table["resnet10t"]["ratios"]] == [0.5, 0.9]
    assert table["resnet10t"]["inputs"] == 2


def test_erf_command_on_saved_maps(tmp_path) -> None:
    # any modality: an adapter's C×H×W output saved as .pt (here a 1-channel 64×48 "spectrogram")
    (tmp_path / "maps").mkdir()
    for i in range(2):
        torch.save(torch.randn(1, 64, 48), tmp_path / "maps" / f"{i}.pt")
    out = tmp_path / "erf.png"
    result = CliRunner().invoke(
        erf, ["test_unireplknet", "--images", str(tmp_path / "maps"), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert _png_shape(out) == (500, 400, 3)


def test_erf_command_reports_bad_input(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(erf, ["test_unireplknet", "--images", str(tmp_path / "empty")])
    assert result.exit_code != 0
    assert "holds no input files" in result.output
    result = CliRunner().invoke(erf, ["test_unireplknet", "--images", str(tmp_path), "--thresholds", "0.5,99"])
    assert result.exit_code != 0
    assert "must lie in (0, 1)" in result.output


def test_plot_command(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rows = ["epoch,train_loss,val_loss,val_top1,lr"]
    rows += [f"{e},{1 / (e + 1)},{1.2 / (e + 1)},{50 + e},{0.01 * (0.9**e)}" for e in range(10)]
    (run / "log.csv").write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(plot, [str(run)])
    assert result.exit_code == 0, result.output
    assert _png_shape(run / "curves.png") == (940, 800, 3)  # three panels and a title line


def test_commands_plug_into_the_unilk_cli(monkeypatch) -> None:
    # the lines the lead adds to unilk.cli._COMMANDS
    from unilk import cli

    lines = {
        "erf": "unilk.diagnostics.commands:erf",
        "info": "unilk.diagnostics.commands:info",
        "convert": "unilk.diagnostics.commands:convert",
        "plot": "unilk.diagnostics.commands:plot",
    }
    for name, target in lines.items():
        monkeypatch.setitem(cli._COMMANDS, name, target)
    result = CliRunner().invoke(cli.cli, ["--help"])
    assert all(name in result.output for name in lines)
    result = CliRunner().invoke(cli.cli, ["info", "test_unireplknet", "--input-size", "3", "64", "64"])
    assert result.exit_code == 0, result.output
    assert "MACs    deploy" in result.output
