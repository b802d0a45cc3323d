"""Series adapter and embedding: files, windows, scaling, map shape, gradient flow, time features, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unilk.adapters import SeriesAdapter, SeriesConfig, SeriesEmbedding, StandardScaler
from unilk.adapters.io import SeriesData, load_series
from unilk.adapters.series import map_shape, time_features
from unilk.errors import ConfigError, InputError

CFG = SeriesConfig(seq_len=12, label_len=6, pred_len=4, group_size=2, d_model=12, freq="h", dropout=0.0, norm="fitted")


def write_csv(path: Path, steps: int = 40, channels: int = 4, bad: str | None = None) -> Path:
    start = np.datetime64("2024-03-01T00:00:00")
    stamps = start + np.arange(steps) * np.timedelta64(1, "h")
    values = np.arange(steps * channels, dtype=np.float64).reshape(steps, channels)
    lines = ["date," + ",".join(f"s{i}" for i in range(channels))]
    for t in range(steps):
        cells = [f"{v:g}" for v in values[t]]
        if bad is not None and t == 7:
            cells[1] = bad
        lines.append(f"{str(stamps[t]).replace('T', ' ')}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_and_npy_windows_and_scaler(tmp_path: Path) -> None:
    data = load_series(write_csv(tmp_path / "s.csv"))
    assert data.values.shape == (40, 4)
    assert data.columns == ("s0", "s1", "s2", "s3")
    assert data.timestamps[1] - data.timestamps[0] == np.timedelta64(1, "h")
    adapter = SeriesAdapter(CFG)
    scaler = adapter.fit_scaler(data)
    np.testing.assert_allclose(scaler.mean, data.values.mean(axis=0), rtol=1e-6)
    assert adapter.num_windows(data) == 40 - 12 - 4 + 1
    w = adapter.window(data, 3)
    assert w["x"].shape == (12, 4)
    assert w["y"].shape == (10, 4)
    assert w["x_mark"].shape == (12, 4)
    assert w["y_mark"].shape == (10, 4)
    # y starts label_len steps before the end of x, and the inverse transform gives the raw values back
    torch.testing.assert_close(w["y"][:6], w["x"][-6:])
    raw = scaler.inverse_transform(w["y"])
    torch.testing.assert_close(raw, torch.from_numpy(data.values[9:19]))
    np.save(tmp_path / "s.npy", data.values)
    from_npy = SeriesAdapter(CFG.replace(freq="none", length="truncate"), scaler)(tmp_path / "s.npy")
    torch.testing.assert_close(from_npy, scaler.transform(torch.from_numpy(data.values[-12:])))
    np.save(tmp_path / "corr.npy", data.values.reshape(40, 2, 2))  # Corrformer layout (T, stations, features)
    np.testing.assert_array_equal(load_series(tmp_path / "corr.npy").values, data.values)
    restored = StandardScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(restored.std, scaler.std)


def test_embedding_map_shape_and_gradient() -> None:
    stem = SeriesEmbedding(CFG)
    x = torch.randn(3, 12, 4, requires_grad=True)  # 3 samples, 2 nodes of 2 channels
    marks = torch.rand(3, 12, 4) - 0.5
    maps = stem(x, marks)
    height, width = map_shape(12 * 12)
    assert maps.shape == (6, 1, height, width)
    assert height * width == CFG.seq_len * CFG.d_model
    assert (height, width) == (12, 12)
    maps.square().sum().backward()
    assert stem.token_conv.weight.grad is not None
    assert stem.token_conv.weight.grad.abs().sum() > 0
    assert stem.time_linear.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    # node j of sample b is map b·n + j and depends only on its own channels
    x2 = x.detach().clone()
    x2[1, :, 2:] += 1.0  # change node 1 of sample 1
    with torch.no_grad():
        diff = (stem(x2, marks) - stem(x.detach(), marks)).flatten(1).abs().sum(1)
    assert diff.nonzero().flatten().tolist() == [3]


def test_map_shape_rules() -> None:
    assert map_shape(48 * 768) == (192, 192)  # the official Global Temp setting
    assert map_shape(96 * 512) == (192, 256)  # not a square: the closest factor pair
    assert map_shape(7) == (1, 7)


def test_time_features_hourly() -> None:
    stamps = np.array(["2024-01-01T00", "2024-01-01T23", "2024-01-07T12"], dtype="datetime64[s]")
    feats = time_features(stamps, "h")
    assert feats.shape == (3, 4)
    # hour, day of week (2024-01-01 was a Monday), day of month, day of year; each scaled to [-0.5, 0.5]
    np.testing.assert_allclose(feats[0], [-0.5, -0.5, -0.5, -0.5])
    np.testing.assert_allclose(feats[1, 0], 0.5)
    np.testing.assert_allclose(feats[2, 1], 0.5)  # Sunday
    assert time_features(stamps, "w").shape == (3, 2)


def test_missing_marks_and_wrong_width_raise() -> None:
    stem = SeriesEmbedding(CFG)
    with pytest.raises(InputError, match="time marks"):
        stem(torch.randn(1, 12, 4))
    with pytest.raises(InputError, match="multiple of group_size"):
        stem(torch.randn(1, 12, 3), torch.zeros(1, 12, 4))


# ----------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf"])
def test_nan_or_inf_in_series(tmp_path: Path, cell: str) -> None:
    path = write_csv(tmp_path / "bad.csv", bad=cell)
    with pytest.raises(InputError, match=r"NaN or inf.*step 7"):
        SeriesAdapter(CFG)(path)


def test_bad_series_files(tmp_path: Path) -> None:
    adapter = SeriesAdapter(CFG.replace(norm="none", length="truncate"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        adapter(tmp_path / "empty.csv")
    good = write_csv(tmp_path / "good.csv").read_text()
    (tmp_path / "trunc.csv").write_text(good[: len(good) // 2].rsplit(",", 1)[0])
    with pytest.raises(InputError, match=r"trunc.csv"):
        adapter(tmp_path / "trunc.csv")
    (tmp_path / "text.csv").write_text("date,a\n2024-01-01,hello\n")
    with pytest.raises(InputError, match="not a number"):
        adapter(tmp_path / "text.csv")
    (tmp_path / "series.wav").write_text(good)
    with pytest.raises(InputError, match="extension"):
        adapter(tmp_path / "series.wav")
    with pytest.raises(InputError, match="fewer than seq_len"):
        adapter(np.zeros((5, 4), np.float32))
    with pytest.raises(InputError, match="no timestamps"):
        SeriesAdapter(CFG).window(SeriesAdapter(CFG).load(np.zeros((30, 4), np.float32)), 0)


# ------------------------------------------------------------------------------------------- length and norm policies

POLICY = SeriesConfig(seq_len=8, label_len=0, pred_len=0, group_size=1, d_model=8, dropout=0.0)


def test_instance_norm_needs_no_fitting_and_takes_any_channel_count() -> None:
    rng = np.random.default_rng(0)
    for channels in (1, 3, 7):
        values = rng.normal(5.0, 3.0, size=(8, channels))
        window = SeriesAdapter(POLICY.replace(group_size=4))(values)
        # channels rounded up to a multiple of group_size with zero channels
        assert window.shape == (8, 4 * -(-channels // 4))
        torch.testing.assert_close(window[:, :channels].mean(0), torch.zeros(channels), atol=1e-5, rtol=0)
        torch.testing.assert_close(window[:, :channels].std(0, unbiased=False), torch.ones(channels), atol=1e-4, rtol=0)
        assert window[:, channels:].abs().sum() == 0
    constant = SeriesAdapter(POLICY)(np.full((8, 1), 3.0))
    assert constant.abs().sum() == 0  # a constant channel maps to 0, not NaN
    with pytest.raises(ConfigError, match="not fitted"):
        SeriesAdapter(POLICY.replace(norm="fitted"))(np.zeros((8, 1)))


def test_length_policies() -> None:
    ramp = np.arange(15, dtype=np.float64)[:, None]  # 0, 1, ..., 14
    raw = {"norm": "none"}
    resampled = SeriesAdapter(POLICY.replace(length="resample", **raw))(ramp)
    torch.testing.assert_close(resampled[:, 0], torch.linspace(0, 14, 8))  # the whole series, first and last kept
    short = SeriesAdapter(POLICY.replace(length="resample", **raw))(ramp[:3])
    torch.testing.assert_close(short[:, 0], torch.linspace(0, 2, 8))
    padded = SeriesAdapter(POLICY.replace(length="pad", **raw))(ramp[:5] + 1)
    torch.testing.assert_close(padded[:, 0], torch.tensor([1.0, 2, 3, 4, 5, 0, 0, 0]))
    cut = SeriesAdapter(POLICY.replace(length="pad", **raw))(ramp)
    torch.testing.assert_close(cut[:, 0], torch.arange(8.0))  # longer: the first seq_len steps
    last = SeriesAdapter(POLICY.replace(length="truncate", **raw))(ramp)
    torch.testing.assert_close(last[:, 0], torch.arange(7.0, 15.0))
    with pytest.raises(InputError, match="fewer than seq_len"):
        SeriesAdapter(POLICY.replace(length="truncate"))(ramp[:5])
    # pad normalises over the observed steps only, then pads with zeros (the series' mean)
    padded_norm = SeriesAdapter(POLICY.replace(length="pad"))(ramp[:4])
    torch.testing.assert_close(padded_norm[:4, 0].mean(), torch.tensor(0.0))
    assert padded_norm[4:].abs().sum() == 0
    with pytest.raises(ConfigError, match="length"):
        SeriesConfig(length="stretch")
    with pytest.raises(ConfigError, match="norm"):
        SeriesConfig(norm="minmax")


def test_marks_need_truncate_when_steps_move() -> None:
    data = SeriesAdapter(CFG).load(
        SeriesData(np.zeros((20, 2), np.float32), ("a", "b"), np.arange(20).astype("datetime64[h]"))
    )
    with pytest.raises(InputError, match="truncate"):
        SeriesAdapter(CFG.replace(length="resample")).marks(data)
    assert SeriesAdapter(CFG.replace(length="truncate")).marks(data).shape == (20, 4)


def test_revin_restores_the_forecast_scale() -> None:
    cfg = SeriesConfig(seq_len=12, label_len=0, pred_len=4, group_size=2, d_model=12, dropout=0.0, revin=True)
    stem = SeriesEmbedding(cfg)
    with torch.no_grad():
        stem.revin_weight.copy_(torch.tensor([2.0, 0.5]))
        stem.revin_bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.randn(3, 12, 4) * torch.tensor([1.0, 10.0, 100.0, 0.1]) + torch.tensor([5.0, -50.0, 0.0, 3.0])
    # the stem sees every window normalised: shifting and scaling a window does not change its maps
    # (up to the eps under the square root, which weighs on the channel of std 0.1)
    torch.testing.assert_close(stem(x * 7.0 + 3.0), stem(x), atol=2e-3, rtol=1e-3)
    # a forecast in the normalised space (here: the normalised window's last step) comes back in the window's units
    mean, std = x.mean(1, keepdim=True), x.std(1, keepdim=True, unbiased=False)
    weight, bias = torch.tensor([2.0, 0.5, 2.0, 0.5]), torch.tensor([1.0, -1.0, 1.0, -1.0])
    normalised_last = ((x[:, -1:] - mean) / std) * weight + bias
    torch.testing.assert_close(stem.restore(normalised_last, x), x[:, -1:], atol=1e-3, rtol=1e-4)
    plain = SeriesEmbedding(cfg.replace(revin=False))
    assert plain.restore(normalised_last, x) is normalised_last


def test_station_position_embedding() -> None:
    cfg = SeriesConfig(seq_len=8, label_len=0, group_size=2, d_model=8, dropout=0.0, num_nodes=3, station_coords=2)
    stem = SeriesEmbedding(cfg)
    assert stem.station_positions.shape == (3, 4)
    assert stem.station_positions.requires_grad
    x = torch.zeros(2, 8, 6)
    before = stem.embed(x)
    coords = np.array([[10.0, 0], [20, 0], [30, 1], [40, 1], [50, 2], [60, 2]])  # 6 stations, (lat, lon)
    stem.set_station_positions(coords)
    assert not stem.station_positions.requires_grad
    standard = (coords - coords.mean(0)) / coords.std(0)
    # node j holds stations 2j and 2j+1, flattened station-major
    torch.testing.assert_close(stem.station_positions[1], torch.tensor(standard[2:4].reshape(-1), dtype=torch.float32))
    after = stem.embed(x)
    # every step of a node gets the same position term; nodes differ
    delta = after - before
    torch.testing.assert_close(delta[:, :1].expand_as(delta), delta)
    assert not torch.allclose(delta[0], delta[1])
    torch.testing.assert_close(delta[:3], delta[3:])  # the same for every sample
    with pytest.raises(InputError, match="num_nodes"):
        stem(torch.zeros(1, 8, 4))
    with pytest.raises(InputError, match="station coordinates"):
        stem.set_station_positions(coords[:4])


def test_group_size_zero_is_one_node_of_all_channels() -> None:
    cfg = POLICY.replace(group_size=0)
    values = np.random.default_rng(1).normal(size=(20, 5))
    window = SeriesAdapter(cfg)(values)
    assert window.shape == (8, 5)  # no channel padding
    with pytest.raises(ConfigError, match="with_channels"):
        SeriesEmbedding(cfg)
    fixed = cfg.with_channels(5)
    assert fixed.group_size == 5
    assert POLICY.with_channels(5) == POLICY
    maps = SeriesEmbedding(fixed)(window[None])
    assert maps.shape == (1, 1, *fixed.map_shape)  # one map for the whole series
    with pytest.raises(ConfigError, match="group_size"):
        POLICY.replace(group_size=-1)
    with pytest.raises(ConfigError, match="num_nodes"):
        POLICY.replace(group_size=0, num_nodes=2)
    with pytest.raises(ConfigError, match="channels"):
        cfg.with_channels(0)


def test_crop_series_keeps_a_window_of_the_drawn_fraction() -> None:
    from unilk.adapters.series import crop_series

    values = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    stamps = np.datetime64("2024-01-01") + np.arange(100)
    data = SeriesData(values, ("a", "b"), stamps)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = crop_series(data, (0.5, 0.8), gen)
        steps, start = out.values.shape[0], int(out.values[0, 0])
        assert 50 <= steps <= 80
        np.testing.assert_array_equal(out.values[:, 0], np.arange(start, start + steps))  # consecutive steps
        assert out.timestamps[0] == stamps[start]
        assert len(out.timestamps) == steps
    assert crop_series(data, (1.0, 1.0), gen).values.shape == (100, 2)
    short = SeriesData(values[:3], ("a", "b"), None)
    assert crop_series(short, (0.1, 0.1), gen).values.shape[0] == 2  # at least two steps


def test_batch_norm_stem_learns_the_data_scale_and_keeps_levels() -> None:
    cfg = POLICY.replace(group_size=2, norm="none", batch_norm=True)
    stem = SeriesEmbedding(cfg)
    gen = torch.Generator().manual_seed(0)
    level = torch.tensor([200.0, -5.0])  # an EEG-like offset per channel
    batch = level + 10.0 * torch.randn(64, 8, 2, generator=gen)
    plain = SeriesEmbedding(cfg.replace(batch_norm=False))
    plain.token_conv.load_state_dict(stem.token_conv.state_dict())
    with torch.no_grad():
        for _ in range(60):  # training batches move the running statistics to the data's
            stem(batch)
        stats = stem.input_norm
        torch.testing.assert_close(stats.running_mean, batch.mean((0, 1)), rtol=0.01, atol=0.5)
        stem.eval()
        one = batch[:1]
        expected = (one - stats.running_mean) / torch.sqrt(stats.running_var + stats.eps)
        # at inference the stem embeds the window standardised by the training statistics
        torch.testing.assert_close(stem.embed(one), plain.embed(expected))
        # a series 30 units above the rest stays above it: the level is not normalised away
        assert not torch.allclose(stem.embed(one + 30.0), stem.embed(one))
    assert "input_norm.running_mean" in stem.state_dict()  # saved with the weights


def test_shape_view_feeds_each_channel_standardised_next_to_itself() -> None:
    cfg = POLICY.replace(group_size=2, norm="none", shape_view=True)
    stem = SeriesEmbedding(cfg).eval()
    assert stem.token_conv.in_channels == 4  # the two channels, then their two shapes
    x = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(0))
    moved = 5.0 * x + 40.0  # the same shapes at another level and scale
    with torch.no_grad():
        assert not torch.allclose(stem.embed(moved), stem.embed(x))  # the level channels see the difference
        stem.token_conv.weight[:, :2] = 0.0  # keep only the shape channels
        torch.testing.assert_close(stem.embed(moved), stem.embed(x), atol=1e-4, rtol=1e-4)
