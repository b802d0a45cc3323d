"""Squeeze-and-excitation with 1×1 convolutions named ``down``/``up`` (UniRepLKNet's SEBlock)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SEBlock"]


class SEBlock(nn.Module):
    """Global average pool -> 1×1 conv ``down`` -> ReLU -> 1×1 conv ``up`` -> sigmoid, gating the input per channel.

    Args:
        channels: C of the input.
        internal_channels: width of the bottleneck (UniRepLKNet uses C // 4).
    """

    def __init__(self, channels: int, internal_channels: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, internal_channels, kernel_size=1, bias=True)
        self.up = nn.Conv2d(internal_channels, channels, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        gate = x.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
        gate = torch.sigmoid(self.up(F.relu(self.down(gate))))
        return x * gate

    @torch.jit.unused
    def gate(self, x: Tensor) -> Tensor:
        """The per-channel gate alone, for callers that fold it into a following matmul (``unilk.ops.fused``).

        Args:
            x: ``(N, C, H, W)``.

        Returns:
            ``(N, C)`` in ``(0, 1)``: ``sigmoid(up(relu(down(mean_hw(x)))))``, the factor :meth:`forward` applies.
        """
        pooled = x.mean((2, 3))  # (N, C)
        hidden = F.relu(F.linear(pooled, self.down.weight.flatten(1), self.down.bias))
        return torch.sigmoid(F.linear(hidden, self.up.weight.flatten(1), self.up.bias))
