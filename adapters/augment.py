"""Training augmentations per modality: the recipe's ``augment:`` section and the transforms that apply it.

This is the public entry point; the configs live in :mod:`unilk.adapters.augment_configs`, the transforms that wrap
the adapters in :mod:`unilk.adapters.augment_transforms`, and the per-modality functions in
:mod:`unilk.adapters.audio_augment`, :mod:`unilk.adapters.video_augment` and :mod:`unilk.adapters.points_augment`.

Example::

    aug = augment_config("audio", {"freq_mask": 48, "time_mask": 48, "noise": True})
    transform = build_train_transform(AudioAdapter(AudioConfig.preset("speechcommands")), aug)
    transform("clip.wav").shape  # torch.Size([1, 128, 128])
"""

from __future__ import annotations

from unilk.adapters.augment_configs import (
    AUGMENTS,
    AudioAugment,
    ImageAugment,
    PointsAugment,
    SeriesAugment,
    VideoAugment,
    augment_config,
)
from unilk.adapters.augment_transforms import PointsVotes, SeriesTrain, build_train_transform

__all__ = [
    "AUGMENTS",
    "AudioAugment",
    "ImageAugment",
    "PointsAugment",
    "PointsVotes",
    "SeriesAugment",
    "SeriesTrain",
    "VideoAugment",
    "augment_config",
    "build_train_transform",
]
