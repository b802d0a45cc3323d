"""Training augmentations of the audio recipes (AST / UniRepLKNet): SpecAugment masks, noise, time roll, mixup.

All randomness comes from a passed ``torch.Generator``, so a seeded run is reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["add_noise_and_roll", "mix_waveforms", "sample_beta", "spec_augment"]


def _mask(map_: Tensor, dim: int, max_width: int, generator: torch.Generator | None) -> Tensor:
    """Zero one band of width U{0..max_width} at a uniform start along ``dim`` (torchaudio's masking rule)."""
    size = map_.shape[dim]
    width = int(torch.randint(0, min(max_width, size) + 1, (1,), generator=generator))
    if width == 0:
        return map_.clone()
    start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
    out = map_.clone()
    out.narrow(dim, start, width).zero_()
    return out


def spec_augment(
    fbank: Tensor,
    freq_mask: int,
    time_mask: int,
    generator: torch.Generator | None = None,
    *,
    time_dim: int = 0,
) -> Tensor:
    """One frequency mask and one time mask set to 0 (applied to the normalised map, as AST does).

    Args:
        fbank: Tensor[T, F] (``time_dim=0``) or Tensor[F, T] (``time_dim=1``).
        freq_mask: maximum mask width in bins (SC recipe: 48).
        time_mask: maximum mask width in frames (SC recipe: 48).
        generator: randomness.
        time_dim: which axis is time.

    Returns:
        A masked copy, same shape.
    """
    out = _mask(fbank, 1 - time_dim, freq_mask, generator)
    return _mask(out, time_dim, time_mask, generator)


def add_noise_and_roll(
    fbank: Tensor, generator: torch.Generator | None = None, *, max_roll: int = 10, time_dim: int = 0
) -> Tensor:
    """AST's noise augmentation: add U(0, 1)·u/10 noise (u ~ U(0, 1) per clip), then roll by U{-max_roll..max_roll}
    frames along time.

    Args:
        fbank: Tensor[T, F] or Tensor[F, T] (see ``time_dim``).
        generator: randomness.
        max_roll: largest shift in frames.
        time_dim: which axis is time.

    Returns:
        A new tensor, same shape.
    """
    level = float(torch.rand((), generator=generator)) / 10.0
    noisy = fbank + torch.rand(fbank.shape, generator=generator) * level
    shift = int(torch.randint(-max_roll, max_roll + 1, (1,), generator=generator))
    return torch.roll(noisy, shifts=shift, dims=time_dim)


def _sample_gamma(shape: float, generator: torch.Generator | None) -> float:
    """Marsaglia-Tsang gamma sampler driven by ``generator``."""
    if shape < 1.0:  # boost: Gamma(a) = Gamma(a + 1) · U^(1/a)
        u = float(torch.rand((), generator=generator))
        return _sample_gamma(shape + 1.0, generator) * u ** (1.0 / shape)
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = float(torch.randn((), generator=generator))
        v = (1.0 + c * x) ** 3
        if v <= 0:
            continue
        u = float(torch.rand((), generator=generator))
        if math.log(max(u, 1e-300)) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v


def sample_beta(alpha: float, beta: float, generator: torch.Generator | None = None) -> float:
    """A draw from Beta(alpha, beta) (mixup's λ; the audio recipe uses Beta(10, 10))."""
    a = _sample_gamma(alpha, generator)
    b = _sample_gamma(beta, generator)
    return a / (a + b)


def mix_waveforms(first: Tensor, second: Tensor, lam: float) -> Tensor:
    """Waveform mixup ``lam·first + (1 − lam)·second``, the second clip cut or zero-padded to the first's length,
    both mean-removed first (as AST). Labels mix with the same ``lam``.

    Args:
        first: Tensor[S] mono.
        second: Tensor[S2] mono.
        lam: mixing weight in [0, 1].

    Returns:
        Tensor[S].
    """
    first = first - first.mean()
    second = second - second.mean()
    if second.shape[0] >= first.shape[0]:
        second = second[: first.shape[0]]
    else:
        second = torch.nn.functional.pad(second, (0, first.shape[0] - second.shape[0]))
    mixed = lam * first + (1.0 - lam) * second
    return mixed - mixed.mean()
