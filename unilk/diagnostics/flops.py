"""Parameter and multiply-accumulate (MAC) counts.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over convolutions and linear layers only (what the
UniRepLKNet, SLaK and RepLKNet papers report as "FLOPs"): ``MACs = FLOPs / 2`` of the ``aten.convolution`` and
``aten.mm``/``aten.addmm`` calls of one forward pass. Normalisation, activations, pooling and element-wise ops are not
counted, nor are conv/linear biases. Count the deploy (re-parameterized) form to reproduce the papers' figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["MacsCount", "count_params", "count_macs"]

# ops that are a convolution or a linear layer (a Linear on a >2-D input folds into addmm)
_COUNTED_OPS = frozenset({"convolution", "_convolution", "mm", "addmm"})


@dataclass(frozen=True)
class MacsCount:
    """MACs of one forward pass.

    Attributes:
        total: multiply-accumulates of all convolutions and linear layers, for the whole batch.
        by_op: the same split by aten op name (``convolution``, ``addmm``, ``mm``).
        input_shape: the ``(N, C, H, W)`` input it was counted at.
    """

    total: int
    by_op: dict[str, int]
    input_shape: tuple[int, ...]

    @property
    def gmacs(self) -> float:
        """``total`` in units of 10⁹."""
        return self.total / 1e9


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once; buffers such as BN statistics not counted).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int], batch_size: int = 1) -> MacsCount:
    """Count the MACs of one eval-mode forward pass.

    Args:
        model: any module taking ``(N, C, H, W)``; it is put in eval mode.
        input_size: ``(C, H, W)``.
        batch_size: ``N``; the count scales linearly with it.

    Returns:
        The count (for the whole batch).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from unilk.ops.lkconv import lkconv_mode

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(batch_size, *input_size, device=device, dtype=dtype)
    model.eval()
    counter = FlopCounterMode(display=False)
    # "plain": the full kernel as one F.conv2d, as the papers count it (the fast paths crop taps or use FFTs)
    with torch.no_grad(), lkconv_mode("plain"), counter:
        model(x)
    by_op: dict[str, int] = {}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(op).split(".")[-1]
        if name in _COUNTED_OPS:
            by_op[name] = by_op.get(name, 0) + int(flops) // 2
    return MacsCount(total=sum(by_op.values()), by_op=by_op, input_shape=tuple(x.shape))
