"""series/quick_classify end to end (fast): an archive folder or class folders, only ``data.root`` set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from unilk.datasets import synthetic
from unilk.errors import ConfigError
from unilk.train.build import build_parts
from unilk.train.commands import train_command
from unilk.train.config import load_recipe

# tiny inputs make last-stage maps smaller than the large kernels; expected here
pytestmark = pytest.mark.filterwarnings("ignore:UniRepLKNet.*smaller than the reach:UserWarning")

# a smaller map and fewer steps than the recipe, so the run takes seconds
FAST = ["adapter.seq_len=64", "adapter.d_model=16", "train.epochs=300", "train.max_steps=80", "log.progress=false"]


def _train(root: Path, out: Path, *extra: str) -> dict:
    torch.set_num_threads(1)
    result = CliRunner().invoke(
        train_command, ["series/quick_classify", f"data.root={root}", f"output_dir={out}", *FAST, *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_quick_classify_learns_a_variable_length_multivariate_archive(tmp_path: Path) -> None:
    # 2 classes x 16 series, 2 channels, 40..100 steps, 2 % missing values; half of each class is the test split
    data = synthetic.make_series_archive(
        tmp_path / "archive", num_classes=2, n_per_class=16, min_length=40, max_length=100, missing_fraction=0.02
    )
    summary = _train(data, tmp_path / "run")
    metrics = summary["metrics"]
    assert set(metrics) >= {"acc", "bacc"}
    assert metrics["acc"] >= 0.8, metrics  # chance is 1/2
    assert metrics["bacc"] >= 0.8, metrics
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True, map_location="cpu")
    assert checkpoint["labels"] == ["k0", "k1"]  # the labels as written in the file


def test_quick_classify_reads_class_folders(tmp_path: Path) -> None:
    data = synthetic.make_series_classification(tmp_path / "folders", num_classes=2, n_per_class=6, channels=3)
    summary = _train(data, tmp_path / "run", "train.max_steps=4")
    assert 0.0 <= summary["metrics"]["bacc"] <= 1.0


def test_series_classification_rejects_time_marks(tmp_path: Path) -> None:
    data = synthetic.make_series_archive(tmp_path / "archive", n_per_class=2)
    recipe = load_recipe("series/quick_classify", [f"data.root={data}", "adapter.freq=h", "adapter.length=truncate"])
    with pytest.raises(ConfigError, match="uses no time marks"):
        build_parts(recipe)
