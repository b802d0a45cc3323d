"""A depthwise "same" convolution module whose forward runs through ``unilk.ops.lkconv``.

It is an ``nn.Conv2d`` (same keys, same constructor), so checkpoints load and forward hooks fire as on any conv; only
its forward picks the fastest exact algorithm for the shape (``depthwise_conv2d``) in the mode its model chose when it
was built (``lkconv_mode``, from ``$UNILK_LKCONV``). Under TorchScript, while a graph is captured, and with the fast
path off it is exactly ``nn.Conv2d``.
"""

import torch
from torch import Tensor, nn

from unilk.ops.lkconv import depthwise_conv2d
from unilk.ops.tracing import plain_required

__all__ = ["DepthwiseConv2d"]


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise (groups = C), stride-1 conv with "same" padding ``(r·(k_h // 2), r·(k_w // 2))``, r the dilation.

    Args:
        channels: C.
        kernel_size: ``k`` or ``(k_h, k_w)``, odd sides.
        bias: learnable bias.
        dilation: r.
    """

    def __init__(
        self, channels: int, kernel_size: int | tuple[int, int], bias: bool = False, *, dilation: int = 1
    ) -> None:
        k_h, k_w = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        padding = (dilation * (k_h // 2), dilation * (k_w // 2))
        super().__init__(channels, channels, (k_h, k_w), padding=padding, dilation=dilation, groups=channels, bias=bias)
        self.fast_path = True
        self.lkconv_mode = "auto"  # the algorithm choice of unilk.ops.lkconv; set by the model when it is built

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        if torch.jit.is_scripting():
            return self._conv_forward(x, self.weight, self.bias)
        if plain_required() or not self.fast_path:
            return self._conv_forward(x, self.weight, self.bias)
        return self._routed(x)

    @torch.jit.unused
    def _routed(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, mode=self.lkconv_mode, dilation=self.dilation[0])
