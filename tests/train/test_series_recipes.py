"""Series recipes end to end (fast): quick_classify on an archive or class folders, tslib_forecast on a CSV and the
Corrformer recipes' station-position embedding, each with only ``data.root`` set (and smaller sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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

# a smaller map and fewer steps than the recipe, so the run takes seconds; no wall-clock limit, so a busy machine
# trains as many steps as a quiet one (the outcome depends on the seed alone)
FAST = ["adapter.seq_len=64", "adapter.d_model=16", "train.epochs=300", "train.max_steps=150", "train.max_minutes=null"]
FAST += ["log.progress=false"]
SHAPE_ONLY = ["adapter.norm=instance", "adapter.batch_norm=false", "adapter.shape_view=false"]


def _train(root: Path, out: Path, *extra: str) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded machine makes two spinning threads slower than one
    try:
        args = ["series/quick_classify", f"data.root={root}", f"output_dir={out}", *FAST, *extra]
        result = CliRunner().invoke(train_command, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_quick_classify_learns_a_variable_length_multivariate_archive(tmp_path: Path) -> None:
    # 2 classes x 24 series, 2 channels, 40..100 steps, 2 % missing values; half of each class is the test split
    data = synthetic.make_series_archive(
        tmp_path / "archive", num_classes=2, n_per_class=24, min_length=40, max_length=100, missing_fraction=0.02
    )
    # The generator gives every channel a random offset and amplitude that say nothing of the class; on 24 training
    # series the recipe's level view (batch_norm) learns those instead of the cycles (test accuracy 0.54-0.67 in
    # 150-300 updates, measured), so this check trains the shape view alone, the setting for levels that are noise.
    summary = _train(data, tmp_path / "run", *SHAPE_ONLY)
    metrics = summary["metrics"]
    assert set(metrics) >= {"acc", "bacc"}
    # a short run on 24 training series: well above chance (1/2; 18 of 24 right by chance has p ≈ 0.01)
    assert metrics["acc"] >= 0.75, metrics
    assert metrics["bacc"] >= 0.75, metrics
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True, map_location="cpu")
    assert checkpoint["labels"] == ["k0", "k1"]  # the labels as written in the file
    assert checkpoint["adapter"]["group_size"] == 2  # group_size 0: one node of the archive's two channels
    # the test split is seen once, by the model after the last update: no checkpoint is chosen by test accuracy
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    evaluated = [row.split(",") for row in rows[1:] if row.split(",")[header.index("acc")]]
    assert [int(row[0]) for row in evaluated] == [summary["step"]] == [150]


def test_quick_classify_reads_class_folders(tmp_path: Path) -> None:
    data = synthetic.make_series_classification(tmp_path / "folders", num_classes=2, n_per_class=6, channels=3)
    summary = _train(data, tmp_path / "run", "train.max_steps=4")
    assert 0.0 <= summary["metrics"]["bacc"] <= 1.0
    train_series = len(list((data / "train").rglob("*.*")))
    assert train_series < 16  # fewer than the recipe's batch: the batch shrinks to the training set, with a warning
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True, map_location="cpu")
    assert checkpoint["recipe"]["data"]["batch_size"] == train_series
    assert summary["step"] == 4


def test_series_classification_rejects_time_marks(tmp_path: Path) -> None:
    data = synthetic.make_series_archive(tmp_path / "archive", n_per_class=2)
    recipe = load_recipe("series/quick_classify", [f"data.root={data}", "adapter.freq=h", "adapter.length=truncate"])
    with pytest.raises(ConfigError, match="uses no time marks"):
        build_parts(recipe)


def test_tslib_forecast_needs_only_the_csv(tmp_path: Path) -> None:
    csv = synthetic.make_forecasting(tmp_path / "fc", length=600) / "synthetic.csv"
    out = tmp_path / "run"
    args = [f"data.root={csv}", f"output_dir={out}", "train.max_steps=2", "adapter.d_model=8", "log.progress=false"]
    result = CliRunner().invoke(train_command, ["series/tslib_forecast", *args])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["mse"] > 0


def test_corrformer_recipe_loads_the_station_positions(tmp_path: Path) -> None:
    root = synthetic.make_corrformer(tmp_path / "weather", steps={"train": 80, "val": 80, "test": 80}, stations=6)
    coords = np.random.default_rng(0).uniform(-90.0, 90.0, size=(6, 3))
    np.save(root / "station_positions.npy", coords)
    small = ["adapter.num_nodes=2", "adapter.group_size=3", "adapter.d_model=16", "model.arch=test_unireplknet"]
    recipe = load_recipe("series/global_temp", [f"data.root={root}", "model.kwargs={}", *small])
    parts = build_parts(recipe)
    stem = parts.model.stem
    assert not stem.station_positions.requires_grad
    standard = (coords - coords.mean(0)) / coords.std(0)
    expected = torch.tensor(standard.reshape(2, 9), dtype=torch.float32)  # node j: stations 3j..3j+2, 3 coords each
    torch.testing.assert_close(stem.station_positions, expected)
    model, item = parts.model.eval(), parts.eval_set[0]
    x, marks = item["input"][None], item["input_mark"][None]
    with torch.no_grad():
        forecast = model(x, marks)
        # revin: the model sees normalised windows and answers in the window's units, so it follows a change of units
        rescaled = model(x * 10.0 + 5.0, marks)
    assert forecast.shape == item["target"][None].shape
    torch.testing.assert_close(rescaled, forecast * 10.0 + 5.0, atol=1e-2, rtol=1e-3)


def test_group_size_zero_takes_the_training_data_channels(tmp_path: Path) -> None:
    data = synthetic.make_series_archive(tmp_path / "archive", n_per_class=2, channels=3)
    recipe = load_recipe("series/quick_classify", [f"data.root={data}", "adapter.group_size=0", *FAST[:2]])
    parts = build_parts(recipe)
    assert parts.adapter["group_size"] == 3  # what the checkpoint records
    assert parts.model.stem.config.group_size == 3
    window = parts.train_set[0]["input"]
    assert window.shape == (64, 3)
    assert parts.model.eval()(window[None]).shape == (1, 3)  # one node: the three channels mixed by the token conv
