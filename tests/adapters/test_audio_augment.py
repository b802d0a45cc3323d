"""Audio training augmentations: seeded, shape-preserving, doing what they say."""

from __future__ import annotations

import torch

from unilk.adapters.audio_augment import add_noise_and_roll, mix_waveforms, sample_beta, spec_augment


def test_spec_augment_zeroes_one_band_per_axis() -> None:
    fbank = torch.ones(100, 64)
    out = spec_augment(fbank, freq_mask=20, time_mask=30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fbank, torch.ones(100, 64))  # the input is not modified
    zero_rows = (out == 0).all(dim=1).sum().item()
    zero_cols = (out == 0).all(dim=0).sum().item()
    assert 0 < zero_rows <= 30
    assert 0 < zero_cols <= 20
    again = spec_augment(fbank, 20, 30, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    # on a freq_time map the masks swap axes
    transposed = spec_augment(fbank.T, 20, 30, torch.Generator().manual_seed(1), time_dim=1)
    assert torch.equal(transposed, out.T)


def test_noise_and_roll_is_small_and_seeded() -> None:
    fbank = torch.arange(50.0).view(50, 1).repeat(1, 4)  # a ramp along time, so a roll is easy to undo
    out = add_noise_and_roll(fbank, torch.Generator().manual_seed(0))
    assert out.shape == fbank.shape
    assert torch.equal(out, add_noise_and_roll(fbank, torch.Generator().manual_seed(0)))
    # undoing one roll of at most 10 frames leaves only non-negative noise below 1/10
    residuals = [torch.roll(out, -k, 0) - fbank for k in range(-10, 11)]
    assert any(r.min() >= 0 and r.max() < 0.1 for r in residuals)


def test_beta_and_mixup() -> None:
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_beta(10.0, 10.0, gen) for _ in range(2000)])
    assert abs(draws.mean().item() - 0.5) < 0.01
    assert abs(draws.var().item() - 0.25 / 21) < 0.002  # Var Beta(a, a) = 1 / (4 (2a + 1))
    small = torch.tensor([sample_beta(0.5, 0.5, gen) for _ in range(2000)])
    assert abs(small.mean().item() - 0.5) < 0.03
    a, b = torch.ones(100), -torch.ones(60)
    mixed = mix_waveforms(a, b, 0.7)
    assert mixed.shape == (100,)
    assert abs(mixed.mean().item()) < 1e-6
