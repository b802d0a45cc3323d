"""Global Response Normalization for channels-last maps (ConvNeXt-V2's GRN, as UniRepLKNet uses it)."""

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["GRNwithNHWC"]


class GRNwithNHWC(nn.Module):
    """``out = (gamma * Nx + 1) * x + beta`` with ``Nx = Gx / (mean_c(Gx) + 1e-6)`` and ``Gx = ||x||_2`` over H, W.

    Keys ``gamma`` and ``beta``, each ``(1, 1, 1, C)``. The deploy form of a UniRepLKNet block folds ``beta`` into the
    following Linear, so ``use_bias=False`` builds the GRN without it.

    Args:
        dim: C.
        use_bias: keep the additive ``beta``.
    """

    def __init__(self, dim: int, use_bias: bool = True) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim)) if use_bias else None

    @property
    def use_bias(self) -> bool:
        """Whether the GRN still has its additive ``beta``."""
        return self.beta is not None

    def forward(self, x: Tensor) -> Tensor:
        """``(N, H, W, C) -> (N, H, W, C)``."""
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)  # (N, 1, 1, C)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        out = (self.gamma * nx + 1) * x
        return out + self.beta if self.beta is not None else out

    @torch.jit.unused
    def scale_from_norms(self, gx: Tensor) -> Tensor:
        """The multiplicative part ``gamma * Nx + 1`` from the L2 norms, for callers that fold it into a matmul.

        Args:
            gx: ``(N, C)``, each channel's L2 norm over H, W.

        Returns:
            ``(N, C)``: the factor :meth:`forward` multiplies ``x`` by (``beta`` is then added separately).
        """
        return self.gamma.view(1, -1) * (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)) + 1
