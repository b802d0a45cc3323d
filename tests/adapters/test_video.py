"""Video adapter: mp4 decoding with both backends, frame sampling, tiling layouts, test views, bad inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_media import gray_frames, write_mp4

from unilk.adapters import VideoAdapter, VideoConfig
from unilk.adapters.io import open_video
from unilk.adapters.video import IMAGENET_MEAN, IMAGENET_STD, crop_frames, sample_frame_indices
from unilk.errors import ConfigError, InputError

STEP = 6  # gray level per frame index in gray_frames
SMALL = {"short_side": 16, "crop_size": 16, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def frame_of(level: torch.Tensor) -> torch.Tensor:
    """Read the frame index back from a [0, 1] gray level."""
    return torch.round(level * 255 / STEP).long()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_mp4_decoding_and_dense_sampling(tmp_path: Path, backend: str) -> None:
    path = write_mp4(tmp_path / "clip.mp4", gray_frames(40))
    source = open_video(path, backend)
    assert (source.num_frames, source.backend) == (40, backend)
    levels = source.get([0, 9, 39, 9])[:, 20, 30, 0].astype(int)
    assert np.abs(levels - np.array([0, 9, 39, 9]) * STEP).max() <= 3  # H.264 is lossy
    adapter = VideoAdapter(VideoConfig(num_frames=4, frame_stride=3, **SMALL), backend=backend)
    clip = adapter.clip(path)
    assert clip.shape == (4, 3, 16, 16)
    # a dense clip of span 10 centred in 40 frames starts at (40 - 10) // 2 = 15
    assert frame_of(clip[:, 0, 8, 8]).tolist() == [15, 18, 21, 24]


def test_sampling_rules() -> None:
    dense = VideoConfig(num_frames=4, frame_stride=2)
    assert dense.clip_span == 7
    assert sample_frame_indices(100, dense).tolist() == [46, 48, 50, 52]
    starts = [sample_frame_indices(100, dense, k, 3)[0] for k in range(3)]
    assert starts == sorted(starts)
    assert starts[0] < 20
    assert starts[-1] > 70
    uniform = VideoConfig(num_frames=4, sampling="uniform")
    assert sample_frame_indices(40, uniform).tolist() == [5, 15, 25, 35]


def test_random_training_clips_are_seeded_and_valid() -> None:
    cfg = VideoConfig(num_frames=4, frame_stride=2, **SMALL)
    frames = gray_frames(40, 16, 32)
    frames[..., :, 1] = np.arange(32, dtype=np.uint8)[None, None, :] * 7  # a ramp: the crop position shows in green
    adapter = VideoAdapter(cfg)
    clips = [adapter.clip(frames, torch.Generator().manual_seed(seed)) for seed in range(6)]
    assert torch.equal(clips[0], adapter.clip(frames, torch.Generator().manual_seed(0)))
    starts = {frame_of(c[0, 0, 0, 0]).item() for c in clips}
    lefts = {round(c[0, 1, 0, 0].item() * 255 / 7) for c in clips}
    assert len(starts) > 1  # random clip starts...
    assert len(lefts) > 1  # ...and random crops
    for c in clips:
        first = frame_of(c[:, 0, 0, 0])
        assert torch.equal(first - first[0], torch.tensor([0, 2, 4, 6]))  # still a dense clip of stride 2
        assert 0 <= first[0] <= 40 - 7


def test_grid_places_frame_t_in_cell_t_div_4_t_mod_4() -> None:
    adapter = VideoAdapter(VideoConfig(num_frames=16, sampling="uniform", **SMALL))
    out = adapter(gray_frames(16, 24, 32))
    assert out.shape == (3, 64, 64)
    assert out.dtype == torch.float32
    cells = out[0].reshape(4, 16, 4, 16)  # (row, y, col, x)
    for t in range(16):
        cell = cells[t // 4, :, t % 4, :]
        assert torch.all(frame_of(cell) == t), t


def test_official_layout_is_the_raw_reshape() -> None:
    adapter = VideoAdapter(VideoConfig(num_frames=16, sampling="uniform", layout="official", **SMALL))
    frames = gray_frames(16, 24, 32)
    out = adapter(frames)
    clip = adapter.clip(frames)  # (T, C, H, W)
    assert torch.equal(out, clip.permute(1, 0, 2, 3).reshape(3, 64, 64))
    # meaning: output row r holds frame floor(4r / H) (a band of H/4 = 4 rows per frame, not a mosaic)
    for r in range(64):
        assert torch.all(frame_of(out[0, r]) == 4 * r // 16), r


def test_explicit_grid_for_other_frame_counts() -> None:
    adapter = VideoAdapter(VideoConfig(num_frames=8, grid_rows=2, grid_cols=4, sampling="uniform", **SMALL))
    out = adapter(gray_frames(8, 16, 16))
    assert out.shape == (3, 32, 64)
    assert frame_of(out[0, 20, 40]).item() == 4 + 2  # row 1, column 2 -> frame 1·4 + 2
    with pytest.raises(ConfigError, match="not a square"):
        VideoConfig(num_frames=8)


def test_test_views_are_clips_times_crops() -> None:
    cfg = VideoConfig(num_frames=4, frame_stride=1, test_clips=2, test_crops=3, **SMALL)
    # frames 16×32 with a horizontal ramp: left, centre and right crops differ
    frames = gray_frames(20, 16, 32)
    frames[..., :16, 1] = 0
    frames[..., 16:, 1] = 200
    views = VideoAdapter(cfg).views(frames)
    assert views.shape == (6, 3, 32, 32)
    green = views[:, 1].mean(dim=(1, 2))
    assert green[0] < green[1] < green[2]  # start, centre, end crop of clip 0
    assert frame_of(views[0, 0, 0, 0]) < frame_of(views[3, 0, 0, 0])  # clip 1 is later than clip 0
    # portrait frames: the crops move down the long (vertical) side
    tall = torch.arange(40.0).view(1, 1, 40, 1).expand(1, 3, 40, 20)
    tops = [crop_frames(tall, 20, position)[0, 0, 0, 0].item() for position in ("start", "center", "end")]
    assert tops == [0.0, 10.0, 20.0]


def test_default_config_makes_896_square(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "wide.mp4", gray_frames(70, 72, 128))
    out = VideoAdapter()(path)
    assert out.shape == (3, 896, 896)
    # cell (0, 0) is frame (70 − 61) // 2 = 4 of gray level 24, normalised with the ImageNet mean / std
    expected = (24 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 100, 100], expected, atol=4 / 255 / 0.224, rtol=0)  # H.264 is lossy
    assert VideoAdapter.in_chans == 3


# ----------------------------------------------------------------------------------------------- bad inputs


def test_too_few_frames_repeat_last_with_warning_or_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_mp4(tmp_path / "short.mp4", gray_frames(5))
    cfg = VideoConfig(num_frames=4, frame_stride=2, **SMALL)
    with caplog.at_level(logging.WARNING):
        clip = VideoAdapter(cfg).clip(path)
    assert "repeating the last frame" in caplog.text
    assert frame_of(clip[:, 0, 8, 8]).tolist() == [0, 2, 4, 4]
    with pytest.raises(InputError, match="fewer than"):
        VideoAdapter(cfg.replace(short_video_policy="error"))(path)


def test_bad_video_files(tmp_path: Path) -> None:
    adapter = VideoAdapter(VideoConfig(num_frames=4, **SMALL))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        adapter(tmp_path / "empty.mp4")
    good = write_mp4(tmp_path / "good.mp4", gray_frames(20)).read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(good[: len(good) // 3])
    with pytest.raises(InputError, match=r"trunc.mp4"):
        adapter(tmp_path / "trunc.mp4")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InputError, match="cannot open video"):
        adapter(tmp_path / "noise.mp4")
    (tmp_path / "clip.wav").write_bytes(good)
    with pytest.raises(InputError, match="extension"):
        adapter(tmp_path / "clip.wav")
    with pytest.raises(InputError, match="no frames"):
        adapter(np.zeros((0, 16, 16, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        adapter(np.zeros((4, 16, 16, 3), np.float32))
