"""Audio training augmentations: mask widths and counts, seeded, shape-preserving, doing what they say."""

from __future__ import annotations

import pytest
import torch

from unilk.adapters.audio_augment import add_noise_and_roll, spec_augment


def _bands(out: torch.Tensor, value: float) -> tuple[int, int]:
    """(fully masked rows, fully masked columns) of a 2-D map."""
    hit = out == value
    return int(hit.all(dim=1).sum()), int(hit.all(dim=0).sum())


def test_spec_augment_masks_one_band_per_axis_within_the_width() -> None:
    fbank = torch.ones(100, 64)
    rows, cols = [], []
    for seed in range(200):
        out = spec_augment(fbank, freq_mask=20, time_mask=30, generator=torch.Generator().manual_seed(seed))
        r, c = _bands(out, 0.0)
        # a masked row (time band) is all zero; a frequency band zeroes whole columns
        rows.append(r)
        cols.append(c)
        masked = out == 0
        assert torch.equal(masked, masked.all(1, keepdim=True) | masked.all(0, keepdim=True))  # whole bands only
    assert torch.equal(fbank, torch.ones(100, 64))  # the input is not modified
    # torchaudio's rule: width floor(u · max) in [0, max - 1]; over 200 draws both ends of the range show up
    assert max(rows) <= 29
    assert max(cols) <= 19
    assert max(rows) >= 25
    assert max(cols) >= 15
    assert min(rows) == 0


def test_spec_augment_band_count_value_and_axes() -> None:
    fbank = torch.ones(1, 80, 40)  # (1, T, F), a channel axis in front
    gen = torch.Generator().manual_seed(3)
    out = spec_augment(fbank, 0, 10, gen, time_masks=4, mask_value=-2.0)
    assert out.shape == fbank.shape
    masked_rows = (out[0] == -2.0).all(dim=1)
    assert (out[0] == -2.0).any(dim=1).equal(masked_rows)  # only whole time rows, no frequency band (freq_mask 0)
    assert 0 < int(masked_rows.sum()) <= 4 * 9
    # the same seed gives the same masks; freq_time swaps the axes
    again = spec_augment(fbank, 0, 10, torch.Generator().manual_seed(3), time_masks=4, mask_value=-2.0)
    assert torch.equal(out, again)
    transposed = spec_augment(
        fbank.transpose(1, 2), 0, 10, torch.Generator().manual_seed(3), time_dim=1, time_masks=4, mask_value=-2.0
    )
    assert torch.equal(transposed, out.transpose(1, 2))
    # widths larger than the map are clamped to it; zero widths leave the map unchanged
    assert spec_augment(fbank, 500, 500, torch.Generator().manual_seed(0)).shape == fbank.shape
    assert torch.equal(spec_augment(fbank, 0, 0, torch.Generator().manual_seed(0)), fbank)


def test_spec_augment_global_rng_is_reproducible_by_seed() -> None:
    fbank = torch.ones(50, 30)
    torch.manual_seed(7)
    first = spec_augment(fbank, 10, 10)
    torch.manual_seed(7)
    assert torch.equal(spec_augment(fbank, 10, 10), first)


def test_noise_and_roll_is_small_and_seeded() -> None:
    fbank = torch.arange(50.0).view(50, 1).repeat(1, 4)  # a ramp along time, so a roll is easy to undo
    out = add_noise_and_roll(fbank, torch.Generator().manual_seed(0))
    assert out.shape == fbank.shape
    assert torch.equal(out, add_noise_and_roll(fbank, torch.Generator().manual_seed(0)))
    # undoing one roll of at most 10 frames leaves only non-negative noise below 1/10
    residuals = [torch.roll(out, -k, 0) - fbank for k in range(-10, 11)]
    assert any(r.min() >= 0 and r.max() < 0.1 for r in residuals)
    # a (1, F, T) map rolls along its last axis
    chan_in = fbank.T.unsqueeze(0)
    chan = add_noise_and_roll(chan_in, torch.Generator().manual_seed(0), time_dim=1)
    assert any(0 <= (torch.roll(chan, -k, 2) - chan_in).min() < 0.1 for k in range(-10, 11))
    assert any((torch.roll(chan, -k, 2) - chan_in).max() < 0.1 for k in range(-10, 11))


@pytest.mark.parametrize("max_roll", [0, 3])
def test_roll_range(max_roll: int) -> None:
    ramp = torch.arange(40.0).view(40, 1)
    for seed in range(30):
        out = add_noise_and_roll(ramp, torch.Generator().manual_seed(seed), max_roll=max_roll)
        shift = int(torch.round(out[0, 0] - ramp[0, 0]).item()) % 40  # row 0 now holds row -shift
        assert min(shift, 40 - shift) <= max_roll
