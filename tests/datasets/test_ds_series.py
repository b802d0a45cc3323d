"""Time-Series-Library CSVs (ETTh fixed splits, custom 70/10/20) and Corrformer .npy files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from unilk.datasets import CorrformerWeather, TSLibDataset, time_features
from unilk.errors import ConfigError, InputError


def _write_csv(
    path: Path, rows: int, columns: list[str], start: str = "2016-07-01 00:00:00", step_min: int = 60
) -> Path:
    """Column j holds ``row index + 1000 * j`` so every value tells which row it came from."""
    t0 = dt.datetime.fromisoformat(start)
    lines = [",".join(["date", *columns])]
    for i in range(rows):
        stamp = (t0 + dt.timedelta(minutes=step_min * i)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(",".join([stamp, *(str(i + 1000 * j) for j in range(len(columns)))]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_etth_fixed_borders(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "ETTh1.csv", 20 * 30 * 24, ["HUFL", "HULL", "OT"])
    month, seq, pred = 30 * 24, 96, 24
    sizes = {}
    for split in ("train", "val", "test"):
        ds = TSLibDataset(path, split, seq_len=seq, label_len=48, pred_len=pred, scale=False)
        sizes[split] = len(ds)
        first = ds[0]
        # the first forecast of val/test starts exactly at the split border (12 and 16 months)
        border = {"train": seq, "val": 12 * month, "test": 16 * month}[split]
        assert first["target"][0, 0].item() == border
        assert first["input"][-1, 0].item() == border - 1
        assert first["target_window"][0, 0].item() == border - 48
    assert sizes == {"train": 12 * month - seq - pred + 1, "val": 4 * month - pred + 1, "test": 4 * month - pred + 1}
    item = TSLibDataset(path, "train", seq_len=seq, label_len=48, pred_len=pred)[0]
    assert item["input"].shape == (96, 3)
    assert item["target"].shape == (24, 3)
    assert item["input_mark"].shape == (96, 4)
    assert item["target_window_mark"].shape == (72, 4)
    with pytest.raises(InputError, match="rows"):
        TSLibDataset(_write_csv(tmp_path / "ETTh2.csv", 1000, ["OT"]), "test")


def test_custom_split_scaling_and_features(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "weather.csv", 1000, ["OT", "a", "b"])  # target not last in the file
    train = TSLibDataset(path, "train", seq_len=24, label_len=12, pred_len=12)
    assert train.columns == ["a", "b", "OT"]
    assert len(train) == 700 - 36 + 1
    assert len(TSLibDataset(path, "val", seq_len=24, label_len=12, pred_len=12)) == 100 + 24 - 36 + 1
    assert len(TSLibDataset(path, "test", seq_len=24, label_len=12, pred_len=12)) == 200 + 24 - 36 + 1
    # the scaler is fitted on the 700 train rows only: OT holds 0..699 there
    np.testing.assert_allclose(train.scaler.mean, [1349.5, 2349.5, 349.5])
    test = TSLibDataset(path, "test", seq_len=24, label_len=12, pred_len=12, features="MS")
    item = test[5]
    assert item["input"].shape == (24, 3)
    assert item["target"].shape == (12, 1)
    restored = test.inverse_transform(item["target"])
    np.testing.assert_allclose(restored[:, 0].numpy(), np.arange(12) + 800 + 5, atol=1e-3)
    single = TSLibDataset(path, "val", seq_len=24, label_len=12, pred_len=12, features="S")
    assert single.columns == ["OT"]
    assert single[0]["input"].shape == (24, 1)
    with pytest.raises(InputError, match="target column"):
        TSLibDataset(path, target="missing")
    with pytest.raises(ConfigError, match="features"):
        TSLibDataset(path, features="X")
    no_date = tmp_path / "nodate.csv"
    no_date.write_text("a,OT\n1,2\n3,4\n")
    with pytest.raises(InputError, match="date"):
        TSLibDataset(no_date)


def test_time_features_match_calendar() -> None:
    stamp = dt.datetime(2016, 7, 1, 13, 45)  # a Friday, day 183 of a leap year
    feats = time_features(np.array([np.datetime64(stamp, "s")]), "t", timeenc=1)[0]
    expected = [45 / 59 - 0.5, 13 / 23 - 0.5, stamp.weekday() / 6 - 0.5, 0 / 30 - 0.5, 182 / 365 - 0.5]
    np.testing.assert_allclose(feats, expected, atol=1e-6)
    cal = time_features(np.array([np.datetime64(stamp, "s")]), "h", timeenc=0)[0]
    assert cal.tolist() == [7, 1, stamp.weekday(), 13]
    with pytest.raises(ConfigError):
        time_features(np.array([np.datetime64(stamp, "s")]), "w", timeenc=0)


def _corrformer_tree(root: Path, steps: int = 80, stations: int = 5, features: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        data = np.arange(steps * stations * features, dtype=np.float32).reshape(steps, stations, features)
        np.save(root / f"temp_global_hourly_{split}.npy", data)
        stamps = np.datetime64("2019-01-01T00", "s") + np.arange(steps) * np.timedelta64(3600, "s")
        np.save(root / f"data_time_{split}.npy", stamps)
    return root


def test_corrformer_windows(tmp_path: Path) -> None:
    root = _corrformer_tree(tmp_path)
    ds = CorrformerWeather(root, "temp", "test", seq_len=48, label_len=24, pred_len=24)
    assert len(ds) == 80 - 72 + 1
    item = ds[1]
    assert item["input"].shape == (48, 5)  # features="S": the first feature of each station
    assert item["target"].shape == (24, 5)
    assert item["input_mark"].shape == (48, 4)
    # row t, station s, feature 0 holds (t * 5 + s) * 3
    assert item["target"][0, 2].item() == ((1 + 48) * 5 + 2) * 3
    full = CorrformerWeather(root, "temp", "val", features="M")
    assert full[0]["input"].shape == (48, 15)
    assert full.unit_scale == 10.0
    assert torch.equal(full.inverse_transform(full[0]["target"]), full[0]["target"])


def test_corrformer_errors(tmp_path: Path) -> None:
    root = _corrformer_tree(tmp_path)
    with pytest.raises(InputError, match=r"wind_global_hourly_train\.npy"):
        CorrformerWeather(root, "wind")
    np.save(root / "data_time_val.npy", np.arange(3))
    with pytest.raises(InputError, match=r"data_time_val\.npy"):
        CorrformerWeather(root, "temp", "val")
    np.save(root / "data_time_val.npy", np.array([object()] * 80, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="allow_pickle"):
        CorrformerWeather(root, "temp", "val")
    (root / "temp_global_hourly_test.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match=r"temp_global_hourly_test\.npy"):
        CorrformerWeather(root, "temp", "test")
    with pytest.raises(ConfigError, match="variable"):
        CorrformerWeather(root, "rain")


def test_corrformer_station_positions(tmp_path: Path) -> None:
    from unilk.datasets import synthetic

    steps = {"train": 40, "val": 40, "test": 40}
    synthetic.make_corrformer(tmp_path, steps=steps, stations=4, features=2)
    assert CorrformerWeather(tmp_path, seq_len=8, label_len=4, pred_len=4).station_positions is None
    coords = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "station_positions.npy", coords)
    single = CorrformerWeather(tmp_path, seq_len=8, label_len=4, pred_len=4)
    np.testing.assert_array_equal(single.station_positions, coords)  # features S: one column per station
    both = CorrformerWeather(tmp_path, seq_len=8, label_len=4, pred_len=4, features="M")
    # columns are station-major: station s, feature f at s·2 + f
    np.testing.assert_array_equal(both.station_positions[[0, 1, 6, 7]], coords[[0, 0, 3, 3]])
    np.save(tmp_path / "station_positions.npy", coords[:3])
    with pytest.raises(InputError, match=r"station_positions.npy: shape \(3, 3\)"):
        CorrformerWeather(tmp_path, seq_len=8, label_len=4, pred_len=4)
