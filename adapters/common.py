"""Small helpers shared by the adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from unilk.errors import InputError

__all__ = ["draw_generator", "stack_maps", "with_generator"]

_T = TypeVar("_T")


def stack_maps(maps: list[Tensor], modality: str) -> Tensor:
    """Stack maps of one shape.

    Args:
        maps: list of Tensor[C, H, W].
        modality: named in the error message.

    Returns:
        Tensor[N, C, H, W].

    Raises:
        InputError: the list is empty or the shapes differ.
    """
    if not maps:
        raise InputError(f"{modality}: cannot collate an empty list of maps; pass at least one")
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1:
        raise InputError(f"{modality}: cannot collate maps of different shapes {sorted(shapes)}; expected one shape")
    return torch.stack(maps)


def draw_generator() -> torch.Generator:
    """A fresh generator seeded from the global torch RNG: per-sample randomness that a global seed reproduces."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))


def with_generator(generator: torch.Generator | None, fn: Callable[[], _T]) -> _T:
    """Run ``fn``, which draws from the global RNG (torchaudio, torchvision), on a stream seeded from ``generator``.

    The global RNG is left as it was; with ``generator`` None, ``fn`` simply draws from the global RNG.
    """
    if generator is None:
        return fn()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return fn()
