"""The ``synth`` command writes a dataset its loader reads."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from unilk.datasets import ImageFolder
from unilk.datasets.cli import synth


def test_synth_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(synth, ["image-folder", str(tmp_path), "--n-per-class", "4", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 16 files" in result.output
    assert len(ImageFolder(tmp_path, "train")) + len(ImageFolder(tmp_path, "val")) == 16
    bad = CliRunner().invoke(synth, ["forecasting", str(tmp_path / "f"), "--n-per-class", "4"])
    assert bad.exit_code != 0
    assert "not sized per class" in bad.output
