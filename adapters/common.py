"""Small helpers shared by the adapters."""

from __future__ import annotations

import torch
from torch import Tensor

from unilk.errors import InputError

__all__ = ["stack_maps"]


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
