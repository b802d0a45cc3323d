"""Training augmentations of the audio recipes (AST / UniRepLKNet): SpecAugment masks, additive noise and time roll.

They act on one normalised map. Randomness comes from a passed ``torch.Generator`` (seeded tests) or, when None, from
the global torch RNG (training: the engine seeds it per rank, so a run is reproducible). Mixup on maps with mixed
labels is a batch operation of the trainer (``train.mixup``, :mod:`unilk.train.mixup`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from unilk.adapters.common import with_generator

__all__ = ["add_noise_and_roll", "spec_augment"]


def spec_augment(
    fbank: Tensor,
    freq_mask: int,
    time_mask: int,
    generator: torch.Generator | None = None,
    *,
    time_dim: int = 0,
    freq_masks: int = 1,
    time_masks: int = 1,
    mask_value: float = 0.0,
) -> Tensor:
    """SpecAugment: ``freq_masks`` frequency bands and ``time_masks`` time bands set to ``mask_value``.

    Each band is torchaudio's ``mask_along_axis`` (AST's ``FrequencyMasking`` / ``TimeMasking``): width
    ``floor(u · max_width)`` with u ~ U(0, 1), so at most ``max_width - 1``, at a uniform start.

    Args:
        fbank: Tensor[T, F] (``time_dim=0``) or Tensor[F, T] (``time_dim=1``); a leading channel axis is allowed.
        freq_mask: maximum band width in bins (AST: Speech Commands 48, AudioSet 48, ESC-50 24); 0 disables.
        time_mask: maximum band width in frames (Speech Commands 48, AudioSet 192, ESC-50 96); 0 disables.
        generator: randomness (None: the global RNG).
        time_dim: which of the last two axes is time (0: the first of them).
        freq_masks: number of frequency bands.
        time_masks: number of time bands.
        mask_value: value written into the bands (AST masks the raw fbank with 0; on a normalised map that is
            ``-mean / (2·std)``).

    Returns:
        A masked copy, same shape.
    """
    import torchaudio.functional as AF

    if time_dim not in (0, 1):
        raise ValueError(f"spec_augment: time_dim {time_dim!r}, expected 0 or 1")
    time_axis = fbank.dim() - 2 + time_dim
    freq_axis = fbank.dim() - 1 - time_dim
    out = fbank.clone()
    for axis, width, count in ((freq_axis, freq_mask, freq_masks), (time_axis, time_mask, time_masks)):
        width = min(width, fbank.shape[axis])  # a band never exceeds the map
        for _ in range(count if width > 0 else 0):
            out = with_generator(generator, functools.partial(AF.mask_along_axis, out, width, mask_value, axis))
    return out


def add_noise_and_roll(
    fbank: Tensor, generator: torch.Generator | None = None, *, max_roll: int = 10, time_dim: int = 0
) -> Tensor:
    """AST's noise augmentation: add U(0, 1)·u/10 noise (u ~ U(0, 1) per clip), then roll by U{-max_roll..max_roll}
    frames along time.

    Args:
        fbank: Tensor[T, F] or Tensor[F, T] (see ``time_dim``); a leading channel axis is allowed.
        generator: randomness (None: the global RNG).
        max_roll: largest shift in frames.
        time_dim: which of the last two axes is time.

    Returns:
        A new tensor, same shape.
    """
    level = float(torch.rand((), generator=generator)) / 10.0
    noisy = fbank + torch.rand(fbank.shape, generator=generator) * level
    shift = int(torch.randint(-max_roll, max_roll + 1, (1,), generator=generator))
    return torch.roll(noisy, shifts=shift, dims=fbank.dim() - 2 + time_dim)
