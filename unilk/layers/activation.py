"""Activations that may overwrite their input, like ``nn.ReLU(inplace=True)``, for where the input is a temporary."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unilk.ops.tracing import plain_required

__all__ = ["GELU"]


class GELU(nn.GELU):
    """Exact (erf) GELU; with ``inplace=True`` it overwrites its input whenever no autograd graph is recorded.

    GELU's gradient needs its input, so under autograd it always runs out of place. Without autograd the in-place form
    is bit-for-bit the same values and skips a fresh output map, which on CPU costs more in page faults than the
    arithmetic (UniRepLKNet-A's stem at batch 16: 16 MB). Use ``inplace=True`` only where the input is a temporary
    that nothing else reads, as for ``nn.ReLU(inplace=True)``.

    Args:
        inplace: overwrite the input when allowed.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        """Any shape."""
        if torch.jit.is_scripting() or not self.inplace:
            return F.gelu(x)
        return self._in_place_when_allowed(x)

    @torch.jit.unused
    def _in_place_when_allowed(self, x: Tensor) -> Tensor:
        if plain_required() or (torch.is_grad_enabled() and x.requires_grad):
            return F.gelu(x)
        return torch.ops.aten.gelu_(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
