"""The training transforms: each wraps a modality's adapter and makes the same map with the ``augment:`` section's
augmentations in between; and the voting test's transform, which reuses the point augmentations.

Randomness comes from the global torch RNG (which the trainer seeds per rank), so a seeded run is reproducible.
Mixup and CutMix act on batches in the trainer (``train.mixup``), not here.

Example::

    aug = augment_config("audio", {"freq_mask": 48, "time_mask": 48, "noise": True})
    transform = build_train_transform(AudioAdapter(AudioConfig.preset("speechcommands")), aug)
    transform("clip.wav").shape  # torch.Size([1, 128, 128])
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unilk.adapters.audio_augment import add_noise_and_roll, spec_augment
from unilk.adapters.augment_configs import AudioAugment, ImageAugment, PointsAugment, SeriesAugment, VideoAugment
from unilk.adapters.common import draw_generator, with_generator
from unilk.adapters.config import AdapterConfig
from unilk.adapters.series import crop_series
from unilk.adapters.video import crop_frames
from unilk.adapters.video_augment import random_flip, random_resized_crop_frames
from unilk.errors import ConfigError

__all__ = [
    "AudioTrain",
    "ImageTrain",
    "PointsTrain",
    "PointsVotes",
    "SeriesTrain",
    "VideoTrain",
    "build_train_transform",
]


class AudioTrain:
    """The audio adapter's map with SpecAugment masks, then noise and roll (AST's order)."""

    def __init__(self, adapter: Any, augment: AudioAugment) -> None:
        self.adapter, self.augment = adapter, augment
        cfg = adapter.config
        self.time_dim = 0 if cfg.layout == "time_freq" else 1
        # AST masks the raw fbank with 0, before normalising: on the normalised map that value is -mean / (2·std)
        self.mask_value = 0.0 if cfg.mean is None else -cfg.mean / (2.0 * cfg.std)

    def __call__(self, sample: Any) -> Tensor:
        """One augmented map Tensor[1, H, W]."""
        aug, gen = self.augment, draw_generator()
        out = self.adapter(sample)
        out = spec_augment(
            out,
            aug.freq_mask,
            aug.time_mask,
            gen,
            time_dim=self.time_dim,
            freq_masks=aug.freq_masks,
            time_masks=aug.time_masks,
            mask_value=self.mask_value,
        )
        if aug.noise:
            out = add_noise_and_roll(out, gen, max_roll=aug.max_roll, time_dim=self.time_dim)
        return out


class ImageTrain:
    """timm's training pipeline on the decoded image, at the adapter's size, interpolation, mean and std."""

    def __init__(self, adapter: Any, augment: ImageAugment) -> None:
        from timm.data import create_transform

        cfg = adapter.config
        self.adapter = adapter
        try:
            self.pipeline = create_transform(
                input_size=tuple(cfg.input_size),
                is_training=True,
                scale=tuple(augment.scale),
                ratio=tuple(augment.ratio),
                hflip=augment.hflip,
                color_jitter=augment.color_jitter,
                auto_augment=augment.auto_augment,
                interpolation=cfg.interpolation,
                mean=tuple(cfg.mean),
                std=tuple(cfg.std),
                re_prob=augment.re_prob,
                re_mode=augment.re_mode,
                re_count=augment.re_count,
            )
        except (ValueError, KeyError, AssertionError) as err:
            raise ConfigError(f"ImageAugment: timm rejected the settings {augment.to_dict()}: {err}") from err

    def __call__(self, sample: Any) -> Tensor:
        """One augmented image Tensor[3, H, W]."""
        from PIL import Image

        pixels = (self.adapter.decode(sample) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels)
        # timm's policies draw from Python's and NumPy's RNGs too: seed all three from the torch RNG, like the other
        # modalities, and leave the global Python/NumPy states as they were
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            return with_generator(torch.Generator().manual_seed(seed), lambda: self.pipeline(image))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class VideoTrain:
    """A clip with temporal jitter, a random-resized (or centre) crop and a flip, then normalised and tiled."""

    def __init__(self, adapter: Any, augment: VideoAugment) -> None:
        self.adapter, self.augment = adapter, augment

    def __call__(self, sample: Any) -> Tensor:
        """One augmented tiled image Tensor[3, rows·S, cols·S]."""
        aug, gen, size = self.augment, draw_generator(), self.adapter.config.crop_size
        frames = self.adapter.resized_frames(sample, gen if aug.temporal_jitter else None)
        if aug.random_resized_crop:
            frames = random_resized_crop_frames(frames, size, gen, scale=tuple(aug.scale), ratio=tuple(aug.ratio))
        else:
            frames = crop_frames(frames, size, "center")
        return self.adapter.finish(random_flip(frames, aug.hflip, gen))


class PointsTrain:
    """A randomly resampled cloud, augmented, then projected to the three depth views."""

    def __init__(self, adapter: Any, augment: PointsAugment) -> None:
        self.adapter, self.augment = adapter, augment

    def __call__(self, sample: Any) -> Tensor:
        """One augmented view stack Tensor[3, S, S]."""
        gen = draw_generator()
        points = self.adapter.points(sample, gen).unsqueeze(0)
        return self.adapter.project_batch(self.augment.apply(points, gen))[0]


class SeriesTrain:
    """A random window of the series (window slicing), fitted and normalised by the adapter, then scaled and jittered.

    Crop fractions are applied to the series' own length (at least 2 steps are kept), so the adapter's ``length``
    policy sees a shorter series; ``resample`` stretches it back to ``seq_len``.
    """

    def __init__(self, adapter: Any, augment: SeriesAugment) -> None:
        self.adapter, self.augment = adapter, augment

    def __call__(self, sample: Any) -> Tensor:
        """One augmented window Tensor[seq_len, D']."""
        aug, gen = self.augment, draw_generator()
        data = self.adapter.load(sample)
        if aug.crop is not None:
            data = crop_series(data, aug.crop, gen)
        out = self.adapter(data)
        if aug.scale is not None:
            low, high = aug.scale
            out = out * (low + (high - low) * torch.rand((), generator=gen))
        if aug.jitter > 0:
            out = out + aug.jitter * torch.randn(out.shape, generator=gen)
        return out


class PointsVotes:
    """The voting test (Point-BERT / P2P on ModelNet): ``votes`` copies of a cloud, the first as is, the others
    randomly scaled and shifted with the training settings; the model's outputs are averaged over them.

    Each cloud's copies come from a generator seeded with ``seed``, so the test is deterministic.
    """

    def __init__(self, adapter: Any, augment: PointsAugment, votes: int, seed: int = 0) -> None:
        if augment.scale is None:
            raise ConfigError("evaluation.votes: the voting test scales and shifts copies; set augment.scale")
        self.adapter, self.votes, self.seed = adapter, votes, seed
        self.augment = PointsAugment(scale=augment.scale, shift=augment.shift, anisotropic=augment.anisotropic)

    def __call__(self, sample: Any) -> Tensor:
        """The views of every copy: Tensor[votes, 3, S, S]."""
        points = self.adapter.points(sample).unsqueeze(0)
        gen = torch.Generator().manual_seed(self.seed)
        copies = [points] + [self.augment.apply(points, gen) for _ in range(self.votes - 1)]
        return self.adapter.project_batch(torch.cat(copies))


def build_train_transform(adapter: Any, augment: AdapterConfig) -> Any:
    """The training transform: the adapter itself when every augmentation is off, else its augmenting wrapper.

    Raises:
        ConfigError: the augmentation config is of another modality.
    """
    if augment.modality != adapter.config.modality:
        raise ConfigError(f"augment: a {augment.modality} config for a {adapter.config.modality} adapter")
    if not augment.active:  # type: ignore[attr-defined]
        return adapter
    wrappers = {
        "audio": AudioTrain,
        "image": ImageTrain,
        "video": VideoTrain,
        "points": PointsTrain,
        "series": SeriesTrain,
    }
    return wrappers[augment.modality](adapter, augment)
