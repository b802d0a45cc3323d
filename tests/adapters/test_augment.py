"""Augmentation configs (off by default, unknown keys rejected) and the training transforms of every modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unilk.adapters import (
    AudioAdapter,
    AudioConfig,
    ImageAdapter,
    ImageConfig,
    PointsAdapter,
    PointsConfig,
    VideoAdapter,
    VideoConfig,
)
from unilk.adapters.augment import (
    AUGMENTS,
    PointsAugment,
    PointsVotes,
    augment_config,
    build_train_transform,
)
from unilk.adapters.video_augment import random_flip, random_resized_crop_frames
from unilk.errors import ConfigError

ADAPTERS = {
    "audio": lambda: AudioAdapter(AudioConfig(num_mel_bins=32, target_frames=48)),
    "image": lambda: ImageAdapter(ImageConfig(input_size=(3, 32, 32), crop_pct=1.0)),
    "video": lambda: VideoAdapter(VideoConfig(num_frames=4, frame_stride=1, short_side=32, crop_size=32)),
    "points": lambda: PointsAdapter(PointsConfig(num_points=256, image_size=32)),
}


@pytest.mark.parametrize("modality", sorted(AUGMENTS))
def test_every_augmentation_is_off_by_default(modality: str) -> None:
    aug = augment_config(modality, {})
    assert not aug.active
    if modality in ADAPTERS:
        adapter = ADAPTERS[modality]()
        assert build_train_transform(adapter, aug) is adapter  # the training maps are the evaluation maps
    with pytest.raises(ConfigError, match="freqm"):
        augment_config(modality, {"freqm": 48})


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="random_resized_crop"):
        augment_config("image", {"auto_augment": "rand-m9-mstd0.5-inc1"})
    with pytest.raises(ConfigError, match="auto_augment"):
        augment_config("image", {"random_resized_crop": True, "auto_augment": "randaugment please"})
    with pytest.raises(ConfigError, match="hflip"):
        augment_config("video", {"hflip": 1.5})
    with pytest.raises(ConfigError, match="scale"):
        augment_config("points", {"scale": [1.2, 0.8]})
    with pytest.raises(ConfigError, match="time_mask"):
        augment_config("audio", {"time_mask": -1})


def _wave(seed: int = 0) -> torch.Tensor:
    return torch.randn(16000, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_audio_transform_masks_with_the_raw_zero_and_is_seeded() -> None:
    adapter = AudioAdapter(AudioConfig(num_mel_bins=32, target_frames=64, mean=-6.0, std=5.0))
    transform = build_train_transform(adapter, augment_config("audio", {"freq_mask": 12, "time_mask": 20}))
    clean = adapter(_wave())
    torch.manual_seed(0)
    out = transform(_wave())
    torch.manual_seed(0)
    assert torch.equal(transform(_wave()), out)  # the global seed reproduces it
    assert out.shape == clean.shape == (1, 64, 32)
    fill = 6.0 / 10.0  # AST masks the raw fbank with 0: normalised, (0 - mean) / (2 std)
    changed = out != clean
    assert changed.any()
    assert torch.allclose(out[changed], torch.full_like(out[changed], fill))
    time_rows = changed[0].all(dim=1).sum().item()
    freq_cols = changed[0].all(dim=0).sum().item()
    assert time_rows <= 19
    assert freq_cols <= 11


def test_audio_noise_is_added_after_normalising() -> None:
    adapter = AudioAdapter(AudioConfig(num_mel_bins=32, target_frames=64))
    transform = build_train_transform(adapter, augment_config("audio", {"noise": True, "max_roll": 0}))
    clean = adapter(_wave())
    torch.manual_seed(1)
    diff = transform(_wave()) - clean
    assert diff.min() >= 0
    assert 0 < diff.max() < 0.1


def _image() -> np.ndarray:
    return (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


def test_image_transform_is_timms_pipeline_and_seeded() -> None:
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32), crop_pct=1.0))
    aug = augment_config(
        "image",
        {"random_resized_crop": True, "auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 1.0, "re_mode": "const"},
    )
    transform = build_train_transform(adapter, aug)
    names = [type(t).__name__ for t in transform.pipeline.transforms]
    assert names[0] == "RandomResizedCropAndInterpolation"
    assert "RandAugment" in names
    assert "RandomErasing" in names
    torch.manual_seed(0)
    first = transform(_image())
    torch.manual_seed(0)
    assert torch.equal(transform(_image()), first)
    assert first.shape == (3, 32, 32)
    # re_prob 1 with a constant fill: every image has an erased (all-zero) box
    assert (first == 0).all(dim=0).any()


def test_video_random_resized_crop_and_flip_apply_to_the_whole_clip() -> None:
    frames = torch.arange(2 * 3 * 40 * 60, dtype=torch.float32).view(2, 3, 40, 60)
    frames[1] = frames[0]  # two identical frames must stay identical: one box for the clip
    out = random_resized_crop_frames(frames, 16, torch.Generator().manual_seed(0), scale=(0.5, 0.5), ratio=(1, 1))
    assert out.shape == (2, 3, 16, 16)
    assert torch.equal(out[0], out[1])
    again = random_resized_crop_frames(frames, 16, torch.Generator().manual_seed(0), scale=(0.5, 0.5), ratio=(1, 1))
    assert torch.equal(out, again)
    flips = [random_flip(frames, 0.5, torch.Generator().manual_seed(s)) for s in range(40)]
    mirrored = [torch.equal(f, frames.flip(-1)) for f in flips]
    assert all(m or torch.equal(f, frames) for f, m in zip(flips, mirrored))
    assert 10 <= sum(mirrored) <= 30
    assert torch.equal(random_flip(frames, 0.0), frames)


def test_video_transform_temporal_jitter_and_flip() -> None:
    # frame t is filled with the value 10·t, so the tile values name the frames that were sampled
    video = np.stack([np.full((32, 48, 3), 10 * t, np.uint8) for t in range(20)])
    adapter = VideoAdapter(VideoConfig(num_frames=4, frame_stride=1, short_side=32, crop_size=32, mean=(0,) * 3,
                                       std=(1,) * 3))  # fmt: skip
    centre = adapter(video)
    transform = build_train_transform(adapter, augment_config("video", {"temporal_jitter": True, "hflip": 1.0}))
    starts = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = transform(video)
        assert out.shape == centre.shape
        starts.add(round(out[0, 0, 0].item() * 255 / 10))
    assert len(starts) > 3  # random starts within the video (20 frames, clip of 4)
    assert max(starts) <= 16


def _cloud() -> torch.Tensor:
    return torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_points_augment_invariances() -> None:
    clouds = torch.randn(4, 100, 3, generator=torch.Generator().manual_seed(0))
    rotated = PointsAugment(rotate=True).apply(clouds, torch.Generator().manual_seed(0))
    # rotation about y keeps y and the distance to the y axis
    torch.testing.assert_close(rotated[..., 1], clouds[..., 1])
    torch.testing.assert_close(rotated[..., [0, 2]].norm(dim=-1), clouds[..., [0, 2]].norm(dim=-1))
    scaled = PointsAugment(scale=(0.5, 2.0)).apply(clouds, torch.Generator().manual_seed(0))
    ratio = scaled / clouds
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-5)  # one factor per cloud
    assert ((ratio[:, 0, 0] >= 0.5) & (ratio[:, 0, 0] <= 2.0)).all()
    jittered = PointsAugment(jitter_sigma=0.01, jitter_clip=0.02).apply(clouds, torch.Generator().manual_seed(0))
    assert (jittered - clouds).abs().max() <= 0.02 + 1e-6
    dropped = PointsAugment(dropout=0.875).apply(clouds, torch.Generator().manual_seed(0))
    same = (dropped == clouds).all(-1) | (dropped == clouds[:, :1]).all(-1)
    assert same.all()  # every point is itself or the cloud's first point
    for aug in (PointsAugment(rotate=True, scale=(0.8, 1.25), shift=0.1, jitter_sigma=0.01, dropout=0.5),):
        assert torch.equal(aug.apply(clouds, torch.Generator().manual_seed(5)),
                           aug.apply(clouds, torch.Generator().manual_seed(5)))  # fmt: skip


def test_points_transform_and_votes() -> None:
    adapter = PointsAdapter(PointsConfig(num_points=256, image_size=32))
    transform = build_train_transform(adapter, augment_config("points", {"rotate": True, "scale": [0.8, 1.25]}))
    torch.manual_seed(0)
    out = transform(_cloud())
    assert out.shape == (3, 32, 32)
    assert not torch.equal(out, adapter(_cloud()))
    votes = PointsVotes(adapter, PointsAugment(scale=(0.67, 1.5), shift=0.2, anisotropic=True), votes=5, seed=0)
    views = votes(_cloud())
    assert views.shape == (5, 3, 32, 32)
    assert torch.equal(views[0], adapter(_cloud()))  # the first vote is the plain cloud
    assert torch.equal(votes(_cloud()), views)  # deterministic
    assert not torch.equal(views[1], views[2])
    with pytest.raises(ConfigError, match=r"augment\.scale"):
        PointsVotes(adapter, PointsAugment(), votes=3)


def _ramp_image(size: int = 32) -> np.ndarray:
    """A grey ramp that brightens left to right (uint8 [size, size, 3]): mirroring and zooming are visible."""
    row = np.linspace(0, 255, size).round().astype(np.uint8)
    return np.repeat(np.tile(row, (size, 1))[..., None], 3, axis=2)


def test_image_full_crop_is_the_adapters_map_and_hflip_mirrors_it() -> None:
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32), crop_pct=1.0))
    clean = adapter(_ramp_image())
    whole = {"random_resized_crop": True, "scale": [1.0, 1.0], "ratio": [1.0, 1.0]}
    kept = build_train_transform(adapter, augment_config("image", {**whole, "hflip": 0.0}))
    mirrored = build_train_transform(adapter, augment_config("image", {**whole, "hflip": 1.0}))
    torch.manual_seed(0)
    # the training pipeline uses the adapter's size, mean and std: a crop of the whole image is the adapter's map
    torch.testing.assert_close(kept(_ramp_image()), clean, atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored(_ramp_image()), clean.flip(-1), atol=1e-5, rtol=0)


def test_image_random_resized_crop_zooms_into_a_part() -> None:
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32), crop_pct=1.0))
    clean = adapter(_ramp_image())
    quarter = {"random_resized_crop": True, "scale": [0.25, 0.25], "ratio": [1.0, 1.0], "hflip": 0.0}
    transform = build_train_transform(adapter, augment_config("image", quarter))
    full_span = float(clean[0, 0, -1] - clean[0, 0, 0])
    for seed in range(5):
        torch.manual_seed(seed)
        out = transform(_ramp_image())
        assert out.shape == clean.shape
        # a 16-pixel-wide box of the ramp, stretched to 32 pixels: about half the brightness span, still increasing
        span = float(out[0, 0, -1] - out[0, 0, 0])
        assert 0.35 * full_span < span < 0.65 * full_span
        assert (out[0, 0, 1:] >= out[0, 0, :-1] - 1e-4).all()


def test_image_color_jitter_changes_colours_not_geometry_and_yields_to_auto_augment() -> None:
    adapter = ImageAdapter(ImageConfig(input_size=(3, 32, 32), crop_pct=1.0))
    whole = {"random_resized_crop": True, "scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.0}
    jitter = build_train_transform(adapter, augment_config("image", {**whole, "color_jitter": 0.4}))
    assert "ColorJitter" in [type(t).__name__ for t in jitter.pipeline.transforms]
    clean = adapter(_ramp_image())
    changed = 0
    for seed in range(5):
        torch.manual_seed(seed)
        out = jitter(_ramp_image())
        changed += int(not torch.allclose(out, clean, atol=1e-3))
        # brightness and contrast are increasing per pixel and a grey image has no saturation or hue to change:
        # the ramp still increases left to right, with no pixel moved
        grey = out * torch.tensor(adapter.config.std).view(3, 1, 1) + torch.tensor(adapter.config.mean).view(3, 1, 1)
        torch.testing.assert_close(grey[0], grey[1], atol=2e-2, rtol=0)
        assert (grey[0, :, 1:] >= grey[0, :, :-1] - 1e-4).all()
    assert changed >= 4
    # timm applies colour jitter only without an auto-augment policy (as the SLaK / ConvNeXt pipelines do)
    policy = {**whole, "color_jitter": 0.4, "auto_augment": "rand-m9-mstd0.5-inc1"}
    pipeline = build_train_transform(adapter, augment_config("image", policy)).pipeline
    names = [type(t).__name__ for t in pipeline.transforms]
    assert "ColorJitter" not in names
    assert "RandAugment" in names


def test_video_flip_mirrors_every_frame_of_the_clip() -> None:
    # frames that brighten left to right, a different level per frame: a mirrored frame darkens left to right
    ramp = np.linspace(0, 100, 48).astype(np.uint8)
    video = np.stack([np.broadcast_to((ramp + 10 * t)[None, :, None], (32, 48, 3)) for t in range(8)])
    cfg = VideoConfig(num_frames=4, frame_stride=2, short_side=32, crop_size=32, mean=(0,) * 3, std=(1,) * 3)
    adapter = VideoAdapter(cfg)
    centre = adapter(video)  # Tensor[3, 2·32, 2·32], four tiles
    mirrored = build_train_transform(adapter, augment_config("video", {"hflip": 1.0}))(video)
    tiles = centre.unfold(1, 32, 32).unfold(2, 32, 32)  # (3, 2, 2, 32, 32)
    torch.testing.assert_close(mirrored.unfold(1, 32, 32).unfold(2, 32, 32), tiles.flip(-1))


def test_series_transform_crops_scales_and_jitters() -> None:
    from unilk.adapters import SeriesAdapter, SeriesConfig

    adapter = SeriesAdapter(SeriesConfig(seq_len=16, label_len=0, pred_len=0, group_size=1, d_model=8))
    ramp = np.linspace(0.0, 1.0, 64)[:, None] ** 2  # a convex ramp: a window of it normalises to another curve
    with pytest.raises(ConfigError, match="crop"):
        augment_config("series", {"crop": [0.5, 1.2]})
    with pytest.raises(ConfigError, match="jitter"):
        augment_config("series", {"jitter": -0.1})
    crop = build_train_transform(adapter, augment_config("series", {"crop": [0.5, 0.5]}))
    torch.manual_seed(0)
    windows = torch.stack([crop(ramp) for _ in range(8)])
    assert windows.shape == (8, 16, 1)
    assert not torch.allclose(windows[0], adapter(ramp))  # half of the series, stretched to 16 steps
    assert len({tuple(w.flatten().tolist()) for w in windows}) > 1  # the window moves
    torch.manual_seed(0)
    torch.testing.assert_close(torch.stack([crop(ramp) for _ in range(8)]), windows)  # seeded
    scale = build_train_transform(adapter, augment_config("series", {"scale": [2.0, 2.0]}))
    torch.testing.assert_close(scale(ramp), 2.0 * adapter(ramp))
    jitter = build_train_transform(adapter, augment_config("series", {"jitter": 0.1}))
    noise = torch.cat([jitter(ramp) - adapter(ramp) for _ in range(50)])
    assert 0.08 < float(noise.std()) < 0.12
    assert abs(float(noise.mean())) < 0.03
