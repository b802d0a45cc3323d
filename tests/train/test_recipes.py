"""Every shipped recipe validates and builds its model and data pipeline on a tiny stand-in of its dataset.

The stand-in is written in the dataset's real layout (synthetic generators, or by hand where there is none); the
recipe keeps its adapter, loss and optimizer settings, only the trunk is swapped for the tiny ``test_unireplknet``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from unilk.datasets import SCANOBJECTNN_CLASSES, synthetic
from unilk.recipes import list_recipes
from unilk.train.build import build_parts
from unilk.train.config import load_recipe
from unilk.train.engine import Trainer
from unilk.train.optim import LRSchedule, build_optimizer


def _resampled(root: Path) -> None:
    """``modelnet40_normal_resampled`` layout: shape names, split lists, ``<class>/<id>.txt`` (xyz + normals)."""
    rng = np.random.default_rng(0)
    names = ["airplane", "bathtub"]
    (root / "modelnet40_shape_names.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    for split in ("train", "test"):
        ids = [f"{n}_{i:04d}" for n in names for i in ((1, 2) if split == "train" else (3,))]
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
        for shape_id in ids:
            path = root / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(path, rng.normal(size=(300, 6)), delimiter=",", fmt="%.6f")


def _scanobjectnn(root: Path) -> None:
    """ScanObjectNN h5 layout: ``main_split/{training,test}_<variant>.h5`` with ``data`` and ``label``."""
    rng = np.random.default_rng(0)
    (root / "main_split").mkdir(parents=True)
    for prefix in ("training", "test"):
        with h5py.File(root / "main_split" / f"{prefix}_objectdataset_augmentedrot_scale75.h5", "w") as handle:
            handle["data"] = rng.normal(size=(3, 2048, 3)).astype(np.float32)
            handle["label"] = np.array([0, 1, len(SCANOBJECTNN_CLASSES) - 1], dtype=np.int64)


def _standin(dataset: str, data_kwargs: dict, root: Path, adapter: dict) -> Path:
    """Write a small stand-in of ``dataset`` under ``root``; returns the ``data.root`` to use."""
    if dataset == "TSLibDataset":  # data.root is the CSV itself
        return synthetic.make_forecasting(root, length=600) / "synthetic.csv"
    elif dataset == "SeriesClassification":
        synthetic.make_series_archive(root, n_per_class=3, min_length=20, max_length=40)
    elif dataset == "SpeechCommands":
        synthetic.make_speech_commands(root, words=("no", "yes"), n_per_class=3)
    elif dataset == "ESC50":
        synthetic.make_esc50(root, categories=("dog", "rain"), n_per_class=5)
    elif dataset == "AudioSet":
        synthetic.make_audioset(root, num_classes=3, n_clips={"unbalanced_train": 4, "eval": 4})
    elif dataset == "Kinetics":
        synthetic.make_kinetics(root, n_per_class=2, size=32)
    elif dataset == "ModelNet40Resampled":
        _resampled(root)
    elif dataset == "ScanObjectNN":
        _scanobjectnn(root)
    elif dataset == "CorrformerWeather":
        steps = {"train": 80, "val": 80, "test": 80}
        # as many stations as the recipe's station-position embedding has, with their coordinates
        stations = adapter.get("num_nodes", 1) * adapter["group_size"]
        synthetic.make_corrformer(root, variable=data_kwargs["variable"], steps=steps, stations=stations, features=1)
        coords = np.random.default_rng(0).uniform(-90, 90, size=(stations, adapter.get("station_coords", 3)))
        np.save(root / "station_positions.npy", coords)
    elif dataset == "ImageFolder":
        synthetic.make_image_folder(root, n_per_class=2, size=40)
    else:
        raise AssertionError(f"no stand-in for {dataset}; add one to this test")
    return root


def test_recipes_are_shipped():
    names = list_recipes()
    for modality in ("audio", "points", "video", "series", "image"):
        assert any(n.startswith(f"{modality}/quick_") for n in names), modality
    expected = {"speech_commands", "audioset", "esc50", "kinetics400", "modelnet40", "scanobjectnn", "global_temp"}
    assert expected | {"global_wind", "imagenet_finetune"} <= {n.split("/")[1] for n in names}


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_validates_and_builds_its_model(name):
    """Fast for every recipe: schema, adapters (train and eval), dataset class and the model with a tiny trunk."""
    from unilk.adapters import build_adapter
    from unilk.train.build import _dataset_class, build_model

    recipe = load_recipe(name).replace(["model.arch=test_unireplknet", "model.pretrained=false", "model.kwargs={}"])
    fields = {k: v for k, v in recipe.adapter.items() if v != "auto"}  # 'auto' statistics come from the data
    adapter = build_adapter(recipe.modality, {**fields, "modality": recipe.modality})
    build_adapter(recipe.modality, {**fields, **recipe.eval_adapter, "modality": recipe.modality})
    _dataset_class(recipe.data.dataset)
    config = adapter.config
    if recipe.modality == "series":
        config = config.with_channels(2)  # group_size 0 (all channels) takes the data's channel count
    model = build_model(recipe, None if recipe.task == "forecast" else 3, config.to_dict())
    build_optimizer(model, recipe.optim, lr=recipe.optim.lr)


def _standin_params() -> list:
    # The paper-scale inputs (1024-frame audio, 896² video maps, 384² images) take tens of seconds on a shared CPU.
    return [n if "/quick_" in n else pytest.param(n, marks=pytest.mark.slow) for n in list_recipes()]


@pytest.mark.parametrize("name", _standin_params())
def test_recipe_builds_its_data_pipeline_on_a_standin(name, tmp_path):
    torch.manual_seed(0)
    recipe = load_recipe(name)
    tiny = ["model.arch=test_unireplknet", "model.pretrained=false", "model.kwargs={}", f"output_dir={tmp_path}/run"]
    root = tmp_path / "data"
    if recipe.data.synthetic is None:
        root = _standin(recipe.data.dataset, recipe.data.kwargs, root, recipe.adapter)
    else:  # quick recipes generate their own data: keep it small here
        small = {"n_per_class": 3, "length": 400}
        tiny += [f"data.synthetic_kwargs.{k}={v}" for k, v in small.items() if k in recipe.data.synthetic_kwargs]
    recipe = recipe.replace([*tiny, f"data.root={root}"])
    parts = build_parts(recipe)
    assert len(parts.train_set) > 0
    assert len(parts.eval_set) > 0
    trainer = Trainer(recipe, parts)
    _, inputs, targets, _ = trainer._collate([(i, parts.eval_set[i]) for i in range(2)])
    if inputs[0].dim() == 5:  # multi-view protocols (video clips × crops, point votes): check the first view
        inputs[0] = inputs[0][:, 0]
    outputs = parts.model(*inputs)
    if recipe.task == "forecast":
        assert outputs.shape == targets.shape
    else:
        assert outputs.shape == (2, len(parts.labels))
    trainer._loss(outputs, targets).backward()
    optimizer = build_optimizer(parts.model, recipe.optim, lr=recipe.optim.lr)
    LRSchedule(optimizer, recipe.sched, recipe.optim.lr, total_steps=10, steps_per_epoch=2).set_step(1)
    assert parts.arch["trunk"] == "test_unireplknet"
    assert parts.adapter["modality"] == recipe.modality
