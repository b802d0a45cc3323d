"""ModelNet40 (mesh folders, PointNet HDF5, normal_resampled) and ScanObjectNN on small trees."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from ds_helpers import touch

from unilk.datasets import SCANOBJECTNN_CLASSES, ModelNet40, ModelNet40H5, ModelNet40Resampled, ScanObjectNN
from unilk.errors import ConfigError, InputError

_OFF = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"


def _write_h5(path: Path, n: int, labels: np.ndarray, points: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.random.default_rng(0).standard_normal((n, points, 3)).astype(np.float32))
        f.create_dataset("label", data=labels)


def test_modelnet_off_folders(tmp_path: Path) -> None:
    shapes = ["airplane/train/airplane_0001.off", "airplane/train/airplane_0002.off", "airplane/test/airplane_0627.off"]
    shapes += ["bathtub/train/bathtub_0001.off", "bathtub/test/bathtub_0107.off"]
    for rel in shapes:
        touch(tmp_path / rel, _OFF)
    train, test = ModelNet40(tmp_path, "train"), ModelNet40(tmp_path, "test")
    assert (len(train), len(test)) == (3, 2)
    assert train.classes == ["airplane", "bathtub"]
    assert train.targets == [0, 0, 1]
    assert test[1]["id"] == "bathtub/test/bathtub_0107.off"
    touch(tmp_path / "airplane" / "train" / "readme.md")
    with pytest.raises(InputError, match=r"readme.md"):
        ModelNet40(tmp_path, "train")
    touch(tmp_path / "chair" / "x.off", _OFF)  # a class folder without train/ and test/
    with pytest.raises(InputError, match=r"chair"):
        ModelNet40(tmp_path, "test")
    with pytest.raises(ConfigError):
        ModelNet40(tmp_path, "val")


def test_modelnet_h5(tmp_path: Path) -> None:
    touch(tmp_path / "shape_names.txt", "airplane\nbathtub\nbed\n")
    _write_h5(tmp_path / "ply_data_train0.h5", 4, np.array([[0], [2], [1], [2]], dtype=np.uint8))
    _write_h5(tmp_path / "ply_data_train1.h5", 2, np.array([[1], [0]], dtype=np.uint8))
    _write_h5(tmp_path / "ply_data_test0.h5", 3, np.array([[2], [2], [0]], dtype=np.uint8))
    listed = [f"data/modelnet40_ply_hdf5_2048/ply_data_train{k}.h5\n" for k in range(2)]
    touch(tmp_path / "train_files.txt", "".join(listed))
    train, test = ModelNet40H5(tmp_path, "train"), ModelNet40H5(tmp_path, "test")  # test: found by glob
    assert (len(train), len(test)) == (6, 3)
    assert train.targets == [0, 2, 1, 2, 1, 0]
    assert train.classes == ["airplane", "bathtub", "bed"]
    item = train[4]
    assert item["id"] == "ply_data_train1.h5:0"
    assert item["input"].shape == (16, 3)
    assert item["input"].dtype == np.float32
    (tmp_path / "ply_data_train1.h5").write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(InputError, match=r"ply_data_train1.h5"):
        ModelNet40H5(tmp_path, "train")
    _write_h5(tmp_path / "ply_data_train1.h5", 1, np.array([[7]]))
    with pytest.raises(InputError, match=r"labels span"):
        ModelNet40H5(tmp_path, "train")


def test_modelnet_resampled(tmp_path: Path) -> None:
    touch(tmp_path / "modelnet40_shape_names.txt", "airplane\nnight_stand\n")
    touch(tmp_path / "modelnet40_train.txt", "airplane_0001\nnight_stand_0001\n")
    touch(tmp_path / "modelnet40_test.txt", "night_stand_0201\n")
    for shape_id in ("airplane_0001", "night_stand_0001", "night_stand_0201"):
        touch(tmp_path / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt", "0.1,0.2,0.3,0,0,1\n")
    train = ModelNet40Resampled(tmp_path, "train")
    assert len(train) == 2
    assert train.targets == [0, 1]
    assert train[1]["id"] == "night_stand_0001"
    assert ModelNet40Resampled(tmp_path, "test").targets == [1]
    (tmp_path / "night_stand" / "night_stand_0201.txt").unlink()
    with pytest.raises(InputError, match=r"night_stand_0201.txt"):
        ModelNet40Resampled(tmp_path, "test")


def test_scanobjectnn(tmp_path: Path) -> None:
    _write_h5(tmp_path / "main_split" / "training_objectdataset_augmentedrot_scale75.h5", 5, np.arange(5) * 3)
    _write_h5(tmp_path / "main_split" / "test_objectdataset_augmentedrot_scale75.h5", 2, np.array([14, 0]))
    train, test = ScanObjectNN(tmp_path, "train"), ScanObjectNN(tmp_path, "test")
    assert (len(train), len(test)) == (5, 2)
    assert len(train.classes) == 15
    assert train.targets == [0, 3, 6, 9, 12]
    assert test.classes[test.targets[0]] == SCANOBJECTNN_CLASSES[14] == "toilet"
    with pytest.raises(InputError, match=r"test_objectdataset.h5"):
        ScanObjectNN(tmp_path, "test", variant="objectdataset")
    _write_h5(tmp_path / "main_split" / "test_objectdataset_augmentedrot_scale75.h5", 1, np.array([15]))
    with pytest.raises(InputError, match=r"labels span"):
        ScanObjectNN(tmp_path, "test")
