"""Training augmentations of the video recipe (VideoMAE / UniRepLKNet): random resized crop and horizontal flip.

Both act on a whole clip Tensor[T, C, H, W] with one draw per clip, so every frame gets the same crop and flip (the
motion stays coherent). Temporal jitter, the random clip start, is :func:`~unilk.adapters.video.random_frame_indices`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unilk.adapters.common import with_generator

__all__ = ["random_flip", "random_resized_crop_frames"]


def random_resized_crop_frames(
    frames: Tensor,
    size: int,
    generator: torch.Generator | None = None,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """torchvision's RandomResizedCrop, one box for the whole clip: a region of ``scale`` × the frame area and aspect
    ``ratio`` (log-uniform), resized to ``size`` × ``size`` (bilinear, antialiased).

    Args:
        frames: Tensor[T, C, H, W], uint8 or float.
        size: output side.
        generator: randomness (None: the global RNG).
        scale: (low, high) fraction of the frame area.
        ratio: (low, high) aspect ratio of the box.

    Returns:
        Tensor[T, C, size, size], same dtype.
    """
    from torchvision.transforms import InterpolationMode, RandomResizedCrop
    from torchvision.transforms import functional as TF

    top, left, height, width = with_generator(
        generator, lambda: RandomResizedCrop.get_params(frames, list(scale), list(ratio))
    )
    return TF.resized_crop(
        frames, top, left, height, width, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True
    )


def random_flip(frames: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """Mirror the whole clip left-right with probability ``prob``. Tensor[..., H, W] -> same."""
    if prob > 0 and float(torch.rand((), generator=generator)) < prob:
        return frames.flip(-1)
    return frames
