"""Synthetic datasets: deterministic from a seed, read back by the real loaders, and learnable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ds_helpers import linear_probe, one_torch_thread

from unilk.adapters import AudioAdapter, AudioConfig, PointsAdapter, PointsConfig
from unilk.adapters.io import load_image, load_points, load_series, open_video
from unilk.datasets import (
    ESC50,
    AudioSet,
    AudioSetJSON,
    CorrformerWeather,
    ImageFolder,
    Kinetics,
    ModelNet40,
    ModelNet40H5,
    SeriesFolder,
    SpeechCommands,
    TSLibDataset,
    synthetic,
)
from unilk.train.metrics import forecast_metrics, mean_average_precision


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


SMALL = {
    "make_speech_commands": {"words": ("go", "no", "up", "yes"), "n_per_class": 3, "duration_s": 0.2},
    "make_esc50": {"n_per_class": 5, "duration_s": 0.2},
    "make_audioset": {"num_classes": 4, "n_clips": {"balanced_train": 8, "eval": 4}, "duration_s": 0.2},
    "make_kinetics": {"n_per_class": 2, "num_frames": 4, "size": 32},
    "make_modelnet": {"n_per_class": 3, "num_points": 64},
    "make_modelnet_h5": {"n_per_class": {"train": 2, "test": 1}, "num_points": 64},
    "make_series_classification": {"n_per_class": 3},
    "make_forecasting": {"length": 200},
    "make_corrformer": {"steps": {"train": 30, "val": 10, "test": 10}},
    "make_image_folder": {"n_per_class": 3},
}


def _tree(root: Path) -> dict[str, bytes]:
    """Every file's content; videos by their decoded frames (the mp4 container bytes may differ run to run)."""
    tree = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".mp4":
            video = open_video(path)
            tree[path.relative_to(root).as_posix()] = video.get(range(video.num_frames)).tobytes()
        else:
            tree[path.relative_to(root).as_posix()] = path.read_bytes()
    return tree


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generators_are_deterministic(name: str, tmp_path: Path) -> None:
    make = getattr(synthetic, name)
    first = _tree(make(tmp_path / "a", seed=3, **SMALL[name]))
    assert first
    assert first == _tree(make(tmp_path / "b", seed=3, **SMALL[name]))
    assert first != _tree(make(tmp_path / "c", seed=4, **SMALL[name]))


def _fbank_features(dataset: SpeechCommands | ESC50 | AudioSet) -> tuple[np.ndarray, list]:
    """Mean over time of the adapter's log-mel map: one 128-d vector per clip."""
    maps = [item["input"] for item in dataset]
    return torch.stack([m[0].mean(0) for m in maps]).numpy(), [item["target"] for item in dataset]


@pytest.fixture(scope="module")
def audio_adapter() -> AudioAdapter:
    return AudioAdapter(AudioConfig.preset("speechcommands", target_frames=100))


def test_speech_commands_separable(tmp_path: Path, audio_adapter: AudioAdapter) -> None:
    root = synthetic.make_speech_commands(tmp_path, seed=0, words=("go", "no", "up", "yes"), n_per_class=20)
    train = SpeechCommands(root, "train", transform=audio_adapter)
    val, test = (
        SpeechCommands(root, "val", transform=audio_adapter),
        SpeechCommands(root, "test", transform=audio_adapter),
    )
    assert (len(train), len(val), len(test)) == (64, 8, 8)
    assert train.classes == ["go", "no", "up", "yes"]
    x_train, y_train = _fbank_features(train)
    x_val, y_val = _fbank_features(val)
    x_test, y_test = _fbank_features(test)
    acc = linear_probe(x_train, np.array(y_train), np.concatenate([x_val, x_test]), np.array(y_val + y_test))
    assert acc >= 0.9  # chance is 0.25


def test_esc50_readback(tmp_path: Path) -> None:
    root = synthetic.make_esc50(tmp_path, seed=0, **SMALL["make_esc50"])
    assert len(ESC50(root, "test", test_fold=4)) == 5
    assert len(ESC50(root, "train", test_fold=4)) == 20
    assert ESC50(root).classes == ["dog", "rain", "crying_baby", "clock_tick", "helicopter"]


def test_audioset_multilabel_learnable(tmp_path: Path, audio_adapter: AudioAdapter) -> None:
    root = synthetic.make_audioset(tmp_path, seed=0, num_classes=4, n_clips={"balanced_train": 60, "eval": 30})
    train, test = AudioSet(root, "balanced_train", audio_adapter), AudioSet(root, "eval", audio_adapter)
    assert (len(train), len(test), len(train.classes)) == (60, 30, 4)
    assert len(AudioSetJSON(root / "eval.json", root / "class_labels_indices.csv")) == 30
    x_train, y_train = _fbank_features(train)
    x_test, y_test = _fbank_features(test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xtr, xte = (torch.as_tensor((x - mean) / std, dtype=torch.float32) for x in (x_train, x_test))
    torch.manual_seed(0)
    layer = torch.nn.Linear(xtr.shape[1], 4)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(layer(xtr), torch.stack(y_train)).backward()
        opt.step()
    targets = torch.stack(y_test)
    with torch.no_grad():
        learned = mean_average_precision(layer(xte), targets)
    chance = mean_average_precision(torch.rand(targets.shape, generator=torch.Generator().manual_seed(0)), targets)
    assert learned >= 0.85
    assert learned > chance + 0.25


def _motion_features(path: Path) -> np.ndarray:
    """Displacement of the bright square's centroid between the first and last frame."""
    video = open_video(path)
    frames = video.get(range(video.num_frames)).astype(np.float32).max(axis=3)  # (T, H, W)
    ys, xs = np.mgrid[0 : frames.shape[1], 0 : frames.shape[2]]
    masks = frames > 100
    cx = (masks * xs).sum((1, 2)) / masks.sum((1, 2))
    cy = (masks * ys).sum((1, 2)) / masks.sum((1, 2))
    return np.array([cx[-1] - cx[0], cy[-1] - cy[0]])


def test_kinetics_separable(tmp_path: Path) -> None:
    root = synthetic.make_kinetics(tmp_path, seed=0, n_per_class=6, num_frames=8, size=32, val_fraction=0.34)
    train, val = Kinetics(root, "train"), Kinetics(root, "val")
    assert train.layout == "list"
    assert (len(train), len(val)) == (16, 8)
    folders = Kinetics(root, "train", layout="folders")
    assert [s["id"] for s in folders] == [s["id"].split("/", 1)[1] for s in train]
    assert folders.targets == train.targets
    x_train = np.stack([_motion_features(s["input"]) for s in train])
    x_val = np.stack([_motion_features(s["input"]) for s in val])
    assert linear_probe(x_train, np.array(train.targets), x_val, np.array(val.targets)) >= 0.85  # chance 0.25


def _shape_features(points: np.ndarray) -> np.ndarray:
    """Pose-invariant features: normalised PCA spectrum and the histogram of distances to the centroid."""
    centred = points - points.mean(0)
    radius = np.linalg.norm(centred, axis=1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1]
    hist = np.histogram(radius / radius.max(), bins=10, range=(0, 1))[0] / len(points)
    return np.concatenate([eig[1:] / eig[0], hist])


def test_modelnet_separable(tmp_path: Path) -> None:
    root = synthetic.make_modelnet(tmp_path / "ply", seed=0, n_per_class=16, num_points=512)
    train = ModelNet40(root, "train", transform=load_points, extension=".ply")
    test = ModelNet40(root, "test", transform=load_points, extension=".ply")
    assert (len(train), len(test), train.classes) == (60, 20, sorted(synthetic.SHAPES))
    assert train[0]["input"].shape == (512, 3)
    x_train = np.stack([_shape_features(s["input"]) for s in train])
    x_test = np.stack([_shape_features(s["input"]) for s in test])
    assert linear_probe(x_train, np.array(train.targets), x_test, np.array(test.targets)) >= 0.8  # chance 0.2
    # the same files through the points adapter: its three depth views, flattened, are linearly separable too
    adapter = PointsAdapter(PointsConfig(num_points=0, image_size=32))
    maps_train = np.stack([adapter(s["input"]).flatten().numpy() for s in train])
    maps_test = np.stack([adapter(s["input"]).flatten().numpy() for s in test])
    assert linear_probe(maps_train, np.array(train.targets), maps_test, np.array(test.targets)) >= 0.5
    h5 = ModelNet40H5(synthetic.make_modelnet_h5(tmp_path / "h5", seed=0), "test")
    assert (len(h5), h5.classes, h5[0]["input"].shape) == (20, list(synthetic.SHAPES), (2048, 3))


def test_series_separable(tmp_path: Path) -> None:
    root = synthetic.make_series_classification(tmp_path, seed=0, n_per_class=20)
    train = SeriesFolder(root, "train", transform=load_series)
    test = SeriesFolder(root, "test", transform=load_series)
    assert (len(train), len(test)) == (60, 20)

    def spectrum(split: SeriesFolder) -> np.ndarray:
        return np.stack([np.abs(np.fft.rfft(s["input"].values, axis=0)).mean(1) for s in split])

    acc = linear_probe(spectrum(train), np.array(train.targets), spectrum(test), np.array(test.targets))
    assert acc >= 0.9  # chance 0.25


def test_forecasting_learnable(tmp_path: Path) -> None:
    path = synthetic.make_forecasting(tmp_path, seed=0, length=1500, channels=3) / "synthetic.csv"
    kw = {"seq_len": 96, "label_len": 48, "pred_len": 24}
    train, test = TSLibDataset(path, "train", **kw), TSLibDataset(path, "test", **kw)
    assert train.columns == ["c0", "c1", "OT"]
    x = torch.stack([train[i]["input"].flatten() for i in range(0, len(train), 2)]).double()
    y = torch.stack([train[i]["target"].flatten() for i in range(0, len(train), 2)]).double()
    ones = torch.ones(len(x), 1, dtype=torch.float64)
    weights = torch.linalg.lstsq(torch.cat([x, ones], 1), y).solution
    xt = torch.stack([test[i]["input"].flatten() for i in range(len(test))]).double()
    truth = torch.stack([test[i]["target"] for i in range(len(test))]).double()
    pred = (torch.cat([xt, torch.ones(len(xt), 1, dtype=torch.float64)], 1) @ weights).view_as(truth)
    learned = forecast_metrics(pred, truth, test.inverse_transform)
    naive = forecast_metrics(torch.zeros_like(truth), truth, test.inverse_transform)  # the train mean
    assert learned["mse"] < 0.1 * naive["mse"]
    scaled = forecast_metrics(pred, truth)
    assert scaled["mse"] != pytest.approx(learned["mse"], rel=0.05)  # original units really differ


def test_corrformer_readback(tmp_path: Path) -> None:
    root = synthetic.make_corrformer(tmp_path, seed=0, stations=4, features=2)
    ds = CorrformerWeather(root, "temp", "val", seq_len=48, label_len=24, pred_len=24)
    assert len(ds) == 120 - 72 + 1
    assert ds[0]["input"].shape == (48, 4)
    celsius = ds.values / ds.unit_scale
    assert celsius.min().item() > -20
    assert celsius.max().item() < 40
    # the daily cycle makes "same hour yesterday" a far better forecast than the window mean
    item = ds[0]
    yesterday = item["input"][-24:]
    mean = item["input"].mean(0, keepdim=True).expand_as(item["target"])
    persistence = forecast_metrics(yesterday[None], item["target"][None], unit_scale=ds.unit_scale)
    climatology = forecast_metrics(mean[None], item["target"][None], unit_scale=ds.unit_scale)
    assert persistence["mae"] < 0.5 * climatology["mae"]


def _direction_features(image: np.ndarray) -> np.ndarray:
    """Mean absolute difference along x, y and the two diagonals, normalised to sum to 1."""
    g = image.astype(np.float32).mean(2)
    diffs = [g[:, 1:] - g[:, :-1], g[1:] - g[:-1], g[1:, 1:] - g[:-1, :-1], g[1:, :-1] - g[:-1, 1:]]
    energy = np.array([np.abs(d).mean() for d in diffs])
    return energy / energy.sum()


def test_images_separable(tmp_path: Path) -> None:
    root = synthetic.make_image_folder(tmp_path, seed=0, n_per_class=16)
    train = ImageFolder(root, "train", transform=load_image)
    val = ImageFolder(root, "val", transform=load_image)
    assert (len(train), len(val)) == (48, 16)
    x_train = np.stack([_direction_features(np.asarray(s["input"])) for s in train])
    x_val = np.stack([_direction_features(np.asarray(s["input"])) for s in val])
    assert linear_probe(x_train, np.array(train.targets), x_val, np.array(val.targets)) >= 0.85  # chance 0.25
