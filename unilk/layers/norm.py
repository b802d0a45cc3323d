"""Channels-first LayerNorm: normalise every pixel over its channel vector (N, C, H, W)."""

import torch
import torch.nn as nn
from torch import Tensor

from unilk.ops.fused import channel_layer_norm, fused_enabled
from unilk.ops.tracing import plain_required

__all__ = ["layer_norm_2d", "LayerNorm2d"]


def layer_norm_2d(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6) -> Tensor:
    """LayerNorm over the channel dimension of an NCHW map, with the biased variance.

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(C,)``.
        bias: ``(C,)``.
        eps: added to the variance.

    Returns:
        ``(N, C, H, W)``.
    """
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + eps)
    return weight[:, None, None] * x + bias[:, None, None]


class LayerNorm2d(nn.Module):
    """LayerNorm for NCHW maps (the official ``LayerNorm(..., data_format="channels_first")``; keys weight, bias).

    With the fast path on (``fast_path``, the default; see :func:`unilk.ops.fused.fused_enabled`) it runs
    :func:`unilk.ops.fused.channel_layer_norm`, equal within float rounding; otherwise the official formula.

    Args:
        num_channels: C.
        eps: added to the variance (UniRepLKNet uses 1e-6).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.fast_path = True

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        if torch.jit.is_scripting():
            return layer_norm_2d(x, self.weight, self.bias, self.eps)
        if not plain_required() and fused_enabled(self.fast_path):
            return channel_layer_norm(x, self.weight, self.bias, self.eps)
        return layer_norm_2d(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
