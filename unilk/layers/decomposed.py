"""SLaK's decomposed large-kernel layer: depthwise M×N ∥ N×M ∥ N×N, each bias-free with its own BN, summed.

Training form (official keys, ``Decom=True``): ``LoRA1.conv.weight`` (C,1,M,N), ``LoRA2.conv.weight`` (C,1,N,M),
``small_conv.conv.weight`` (C,1,N,N), each with ``.bn.*`` (no ``bn`` keys with ``bn=False``). The small branch exists
only when N < M. Every branch uses per-axis "same" padding (M//2, N//2), (N//2, M//2), (N//2, N//2).

SLaK's authors infer unmerged, but the merge is exact (BN is per-channel affine, all branches are centred):

* decomposed deploy form (the default): the BN-fused N×N kernel is added into the centre rows of the BN-fused M×N
  kernel, leaving two rectangular convs (``LoRA1`` with the one bias, ``LoRA2`` without) -- about 5× cheaper than a
  dense M×M kernel;
* dense deploy form: all three kernels centred in one M×M kernel with bias (``lkb_reparam``, the name SLaK gives its
  merged conv).

The sparsity pattern of a sparse kernel survives fusion (BN scales whole channels); folding the N×N kernel only
changes the central N×N block of ``LoRA1``.
"""

import torch
import torch.nn as nn
from torch import Tensor

from unilk.layers.depthwise import DepthwiseConv2d
from unilk.layers.fuse import merge_kernel, pad_kernel
from unilk.layers.replk import DepthwiseConvBN, check_odd_kernel
from unilk.ops.lkconv import depthwise_conv2d_sum
from unilk.ops.tracing import plain_required

__all__ = ["DecomposedLargeKernelConv"]


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


class DecomposedLargeKernelConv(nn.Module):
    """Depthwise M×N + N×M + N×N branches with BN (train), two rectangular convs or one M×M conv (deploy).

    Args:
        channels: C (depthwise: groups = C).
        kernel_size: M, the long side (odd).
        small_kernel: N, the short side of both rectangles and the side of the square branch (odd); the square
            branch exists only when N < M.
        bn: BatchNorm after each branch (SLaK's ``--bn``); without it the branches have no bias at all.
        deploy: build an inference form directly.
        merge_dense: the inference form is one dense M×M conv (``lkb_reparam``) instead of the two rectangular convs.
        norm_layer: the BatchNorm class of the branches.

    Raises:
        ConfigError: for an even kernel side.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        small_kernel: int = 5,
        *,
        bn: bool = True,
        deploy: bool = False,
        merge_dense: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.kernel_size = check_odd_kernel("kernel_size", kernel_size)[0]
        self.small_kernel = check_odd_kernel("small_kernel", small_kernel)[0]
        self.has_small = self.small_kernel < self.kernel_size
        self.merge_dense = merge_dense
        self.deploy = deploy
        tall, wide = (self.kernel_size, self.small_kernel), (self.small_kernel, self.kernel_size)
        if deploy and merge_dense:
            self.lkb_reparam = DepthwiseConv2d(channels, self._dense_size(), bias=True)
        elif deploy:
            self.LoRA1 = DepthwiseConv2d(channels, tall, bias=True)
            self.LoRA2 = DepthwiseConv2d(channels, wide, bias=False)
        else:
            self.LoRA1 = DepthwiseConvBN(channels, tall, bn=bn, norm_layer=norm_layer)
            self.LoRA2 = DepthwiseConvBN(channels, wide, bn=bn, norm_layer=norm_layer)
            if self.has_small:
                self.small_conv = DepthwiseConvBN(channels, self.small_kernel, bn=bn, norm_layer=norm_layer)

    def _dense_size(self) -> tuple[int, int]:
        side = max(self.kernel_size, self.small_kernel)
        return side, side

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        if torch.jit.is_scripting():
            return self._plain_forward(x)
        if self._sums_in_place():
            weights = (self.LoRA1.weight, self.LoRA2.weight)
            return depthwise_conv2d_sum(x, weights, self.LoRA1.bias, mode=self.LoRA1.lkconv_mode)
        return self._plain_forward(x)

    @torch.jit.unused
    def _sums_in_place(self) -> bool:
        # The decomposed deploy form adds the second rectangle into the first's output (bit-for-bit the same sum),
        # unless a hook on either conv must see its own call.
        if not self.deploy or self.merge_dense or plain_required():
            return False
        tall, wide = self.LoRA1, self.LoRA2
        return tall.fast_path and wide.fast_path and not (_hooked(tall) or _hooked(wide))

    def _plain_forward(self, x: Tensor) -> Tensor:
        # module calls (the convs carry their "same" padding and route through unilk.ops.lkconv themselves)
        if hasattr(self, "lkb_reparam"):
            return self.lkb_reparam(x)
        out = self.LoRA1(x) + self.LoRA2(x)
        if hasattr(self, "small_conv"):
            out = out + self.small_conv(x)
        return out

    def fused_kernels(self) -> tuple[Tensor, Tensor, Tensor]:
        """The exact decomposed inference form (eval-mode BN).

        Returns:
            ``(tall, wide, bias)``: the M×N kernel ``(C, 1, M, N)`` with the N×N kernel folded into its centre, the
            N×M kernel ``(C, 1, N, M)``, and the summed bias ``(C,)``.

        Raises:
            RuntimeError: if the layer was already merged into the dense form (the rectangles are gone).
        """
        if self.deploy and self.merge_dense:
            raise RuntimeError("this layer is merged into one dense kernel; the decomposed form cannot be recovered")
        if self.deploy:
            return self.LoRA1.weight, self.LoRA2.weight, self.LoRA1.bias
        tall, bias = self.LoRA1.fused_kernel_bias()
        wide, wide_bias = self.LoRA2.fused_kernel_bias()
        bias = bias + wide_bias
        if self.has_small:
            small, small_bias = self.small_conv.fused_kernel_bias()
            tall = merge_kernel(tall, small)
            bias = bias + small_bias
        return tall, wide, bias

    def fused_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The exact dense inference kernel ``(C, 1, M, M)`` and bias ``(C,)`` (eval-mode BN)."""
        if self.deploy and self.merge_dense:
            return self.lkb_reparam.weight, self.lkb_reparam.bias
        tall, wide, bias = self.fused_kernels()
        size = self._dense_size()
        return pad_kernel(tall, size) + pad_kernel(wide, size), bias

    @torch.no_grad()
    def reparameterize(self, dense: bool | None = None) -> None:
        """Replace the branches by their exact inference form, in place (idempotent).

        Args:
            dense: merge into one dense M×M conv (``lkb_reparam``); False keeps two rectangular convs (``LoRA1`` with
                the bias, ``LoRA2``); None uses the layer's ``merge_dense``. A decomposed deploy form can still be
                merged densely later; the reverse is not possible.
        """
        dense = self.merge_dense if dense is None else dense
        if self.deploy and (self.merge_dense or not dense):
            return
        if dense:
            kernel, bias = self.fused_kernel_bias()
            conv = DepthwiseConv2d(kernel.shape[0], self._dense_size(), bias=True)
            conv = conv.to(device=kernel.device, dtype=kernel.dtype)
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
            del self.LoRA1, self.LoRA2
            self.lkb_reparam = conv
        else:
            tall, wide, bias = self.fused_kernels()
            channels = tall.shape[0]
            conv_tall = DepthwiseConv2d(channels, tuple(tall.shape[-2:]), bias=True).to(tall.device, tall.dtype)
            conv_wide = DepthwiseConv2d(channels, tuple(wide.shape[-2:]), bias=False).to(tall.device, tall.dtype)
            conv_tall.weight.copy_(tall)
            conv_tall.bias.copy_(bias)
            conv_wide.weight.copy_(wide)
            self.LoRA1, self.LoRA2 = conv_tall, conv_wide
        if self.has_small and not self.deploy:
            del self.small_conv
        self.merge_dense = dense
        self.deploy = True

    def extra_repr(self) -> str:
        return (
            f"kernel_size=({self.kernel_size}, {self.small_kernel}), small={self.has_small}, deploy={self.deploy}, "
            f"merge_dense={self.merge_dense}"
        )
