"""Large-kernel depthwise convolution: one entry point for every large-kernel layer of the three trunks.

``depthwise_conv2d`` computes exactly what ``nn.Conv2d(C, C, (k_h, k_w), padding=(k_h // 2, k_w // 2), groups=C)``
computes (stride 1, "same" padding per axis). Layers keep plain ``nn.Conv2d`` modules (so checkpoints, export and
``state_dict`` keys are unchanged) and call this function in ``forward`` with the module's weight and bias.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["depthwise_conv2d"]


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Depthwise "same" convolution with stride 1.

    Args:
        x: input ``(N, C, H, W)``.
        weight: depthwise kernel ``(C, 1, k_h, k_w)`` with odd ``k_h`` and ``k_w``.
        bias: ``(C,)`` or None.

    Returns:
        ``(N, C, H, W)``.
    """
    k_h, k_w = weight.shape[-2:]
    return F.conv2d(x, weight, bias, padding=(k_h // 2, k_w // 2), groups=weight.shape[0])
