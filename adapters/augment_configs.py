"""The ``augment:`` section of a recipe: one frozen config per modality, every field off by default.

The paper recipes set the papers' values; a recipe without the section trains on exactly the evaluation maps. The
transforms that apply these configs are in :mod:`unilk.adapters.augment_transforms`.

Example::

    aug = augment_config("points", {"rotate": True, "scale": [0.8, 1.25]})
    aug.active  # True
    augment_config("image", {}).active  # False
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from unilk.adapters.config import AdapterConfig, check_choice
from unilk.adapters.points_augment import jitter, point_dropout, rotate_up, scale_shift
from unilk.errors import ConfigError

__all__ = [
    "AUGMENTS",
    "AudioAugment",
    "ImageAugment",
    "PointsAugment",
    "SeriesAugment",
    "VideoAugment",
    "augment_config",
]


def _check_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected a number in [{low}, {high}]")


def _check_count(owner: str, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected an integer ≥ 0")


def _check_pair(owner: str, name: str, value: tuple[float, ...] | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or len(value) != 2 or not 0 < value[0] <= value[1]:
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected [low, high] with 0 < low ≤ high")


def _check_policy(owner: str, policy: str) -> None:
    """Raise ConfigError unless timm parses ``policy`` (its own parser, so every timm policy string is accepted)."""
    from timm.data import create_transform

    try:
        create_transform(input_size=32, is_training=True, auto_augment=policy)
    except (ValueError, KeyError, AssertionError, IndexError) as err:
        raise ConfigError(
            f"{owner}.auto_augment: got {policy!r}, which timm rejects ({err!r}); expected a timm policy such as "
            "'rand-m9-mstd0.5-inc1' (RandAugment), 'augmix-m5-w4-d2', 'original' or 'v0', or null"
        ) from err


@dataclasses.dataclass(frozen=True)
class AudioAugment(AdapterConfig):
    """Audio augmentations (AST's, which UniRepLKNet's audio code copies).

    Attributes:
        freq_mask: SpecAugment frequency band width limit in bins (0: off; AST: SC 48, AudioSet 48, ESC-50 24).
        time_mask: SpecAugment time band width limit in frames (0: off; AST: SC 48, AudioSet 192, ESC-50 96).
        freq_masks: frequency bands per map (AST: 1).
        time_masks: time bands per map (AST: 1).
        noise: add U(0, 1)·u/10 noise and roll by up to ``max_roll`` frames (AST's ``noise``; on for SC).
        max_roll: largest roll in frames.
    """

    modality = "audio"

    freq_mask: int = 0
    time_mask: int = 0
    freq_masks: int = 1
    time_masks: int = 1
    noise: bool = False
    max_roll: int = 10

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("freq_mask", "time_mask", "freq_masks", "time_masks", "max_roll"):
            _check_count(owner, name, getattr(self, name))
        check_choice(owner, "noise", self.noise, (True, False))

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.freq_mask > 0 or self.time_mask > 0 or self.noise


@dataclasses.dataclass(frozen=True)
class ImageAugment(AdapterConfig):
    """timm's ImageNet training pipeline (``timm.data.create_transform(is_training=True)``).

    Attributes:
        random_resized_crop: train on timm's random-resized-crop + flip pipeline instead of the evaluation crop; the
            other fields need it.
        scale: area fraction range of the random crop.
        ratio: aspect ratio range of the random crop.
        hflip: horizontal flip probability.
        color_jitter: colour jitter strength (timm applies it only when ``auto_augment`` is unset).
        auto_augment: timm policy string, e.g. ``rand-m9-mstd0.5-inc1`` (RandAugment); None: off.
        re_prob: random erasing probability (0: off).
        re_mode: random erasing fill: ``pixel`` (per-pixel normal), ``rand`` (per channel) or ``const``.
        re_count: maximum erased boxes per image.
    """

    modality = "image"

    random_resized_crop: bool = False
    scale: tuple[float, ...] = (0.08, 1.0)
    ratio: tuple[float, ...] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.0
    auto_augment: str | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"
    re_count: int = 1

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_choice(owner, "random_resized_crop", self.random_resized_crop, (True, False))
        _check_pair(owner, "scale", self.scale)
        _check_pair(owner, "ratio", self.ratio)
        for name in ("hflip", "re_prob"):
            _check_range(owner, name, getattr(self, name), 0.0, 1.0)
        _check_range(owner, "color_jitter", self.color_jitter, 0.0, 10.0)
        check_choice(owner, "re_mode", self.re_mode, ("pixel", "rand", "const"))
        _check_count(owner, "re_count", self.re_count)
        if self.auto_augment is not None:
            _check_policy(owner, self.auto_augment)
        extras = self.color_jitter > 0 or self.auto_augment is not None or self.re_prob > 0
        if extras and not self.random_resized_crop:
            raise ConfigError(
                f"{owner}: color_jitter/auto_augment/re_prob are part of timm's training pipeline; set "
                "random_resized_crop: true to use them"
            )

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.random_resized_crop


@dataclasses.dataclass(frozen=True)
class VideoAugment(AdapterConfig):
    """Video augmentations (VideoMAE's fine-tuning, which UniRepLKNet's video code uses), one draw per clip.

    Attributes:
        temporal_jitter: a random clip start (dense sampling) or a random frame per segment (uniform) instead of the
            centre clip.
        random_resized_crop: a random-resized crop of ``scale`` × ``ratio`` resized to the crop size, instead of the
            centre crop.
        scale: area fraction range of the random crop.
        ratio: aspect ratio range of the random crop.
        hflip: probability of mirroring the clip (0: off; leave off when left/right is part of the label).
    """

    modality = "video"

    temporal_jitter: bool = False
    random_resized_crop: bool = False
    scale: tuple[float, ...] = (0.08, 1.0)
    ratio: tuple[float, ...] = (3 / 4, 4 / 3)
    hflip: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_choice(owner, "temporal_jitter", self.temporal_jitter, (True, False))
        check_choice(owner, "random_resized_crop", self.random_resized_crop, (True, False))
        _check_pair(owner, "scale", self.scale)
        _check_pair(owner, "ratio", self.ratio)
        _check_range(owner, "hflip", self.hflip, 0.0, 1.0)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.temporal_jitter or self.random_resized_crop or self.hflip > 0


@dataclasses.dataclass(frozen=True)
class PointsAugment(AdapterConfig):
    """Point-cloud augmentations (PointNet++ / DGCNN / Point-BERT, as in UniRepLKNet's ``data_transforms.py``).

    Applied in this order to the resampled, normalised cloud: rotation, scale and shift, jitter, point dropout.

    Attributes:
        scale: (low, high) of the random scale (PointNet++ 0.8-1.25; ScaleAndTranslate 2/3-3/2); None: off.
        shift: half-range of the random per-axis translation (PointNet++ 0.1, ScaleAndTranslate 0.2); needs ``scale``.
        anisotropic: one scale factor per axis (ScaleAndTranslate) instead of one per cloud.
        jitter_sigma: std of the clipped Gaussian jitter (0: off; PointNet++ 0.01).
        jitter_clip: clip of the jitter (PointNet++ 0.05).
        rotate: a uniform random rotation about ``up_axis``.
        up_axis: 0, 1 (y, ModelNet) or 2 (z).
        dropout: maximum ratio of PointNet++'s random input dropout (0: off; PointNet++ 0.875).
    """

    modality = "points"

    scale: tuple[float, ...] | None = None
    shift: float = 0.0
    anisotropic: bool = False
    jitter_sigma: float = 0.0
    jitter_clip: float = 0.05
    rotate: bool = False
    up_axis: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_pair(owner, "scale", self.scale, allow_none=True)
        _check_range(owner, "shift", self.shift, 0.0, 1.0)
        if self.shift > 0 and self.scale is None:
            raise ConfigError(f"{owner}.shift: got {self.shift}, but scale is null; set scale (e.g. [1, 1]) too")
        check_choice(owner, "anisotropic", self.anisotropic, (True, False))
        _check_range(owner, "jitter_sigma", self.jitter_sigma, 0.0, 1.0)
        _check_range(owner, "jitter_clip", self.jitter_clip, 0.0, 1.0)
        check_choice(owner, "rotate", self.rotate, (True, False))
        check_choice(owner, "up_axis", self.up_axis, (0, 1, 2))
        _check_range(owner, "dropout", self.dropout, 0.0, 0.99)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.scale is not None or self.jitter_sigma > 0 or self.rotate or self.dropout > 0

    def apply(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch of clouds Tensor[B, N, 3] -> Tensor[B, N, 3]."""
        if self.rotate:
            points = rotate_up(points, generator, up_axis=self.up_axis)
        if self.scale is not None:
            low, high = self.scale
            points = scale_shift(points, generator, scale=(low, high), shift=self.shift, anisotropic=self.anisotropic)
        if self.jitter_sigma > 0:
            points = jitter(points, generator, sigma=self.jitter_sigma, clip=self.jitter_clip)
        if self.dropout > 0:
            points = point_dropout(points, generator, max_ratio=self.dropout)
        return points


@dataclasses.dataclass(frozen=True)
class SeriesAugment(AdapterConfig):
    """Series classification augmentations (forecasting windows get none).

    Attributes:
        crop: window slicing: each training series is cut to a random window of this fraction of its steps (drawn
            uniformly from ``[low, high]``, at a uniform start) before the adapter fits it to ``seq_len`` steps;
            None: off.
        scale: multiply each training window by a factor drawn uniformly from ``[low, high]`` (after normalisation);
            None: off.
        jitter: add Gaussian noise of this standard deviation to each normalised training window (0: off).
    """

    modality = "series"

    crop: tuple[float, float] | None = None
    scale: tuple[float, float] | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_pair(owner, "crop", self.crop, allow_none=True)
        if self.crop is not None and self.crop[1] > 1.0:
            raise ConfigError(f"{owner}.crop: got {self.crop!r}, expected fractions of the series in (0, 1]")
        _check_pair(owner, "scale", self.scale, allow_none=True)
        _check_range(owner, "jitter", self.jitter, 0.0, 10.0)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.crop is not None or self.scale is not None or self.jitter > 0


#: modality -> augmentation config class
AUGMENTS: dict[str, type[AdapterConfig]] = {
    "audio": AudioAugment,
    "image": ImageAugment,
    "video": VideoAugment,
    "points": PointsAugment,
    "series": SeriesAugment,
}


def augment_config(modality: str, data: Mapping[str, Any] | None) -> Any:
    """The augmentation config of ``modality`` from a recipe's ``augment:`` mapping (unknown keys raise).

    Raises:
        ConfigError: unknown modality, unknown key or bad value.
    """
    if modality not in AUGMENTS:
        raise ConfigError(f"augment: modality {modality!r}; expected one of {sorted(AUGMENTS)}")
    return AUGMENTS[modality].from_dict(data)
