"""RepLKNet's large-kernel layer: a depthwise K×K conv + BN in parallel with a small k×k conv + BN, summed.

Training form (official keys): ``lkb_origin.conv.weight``, ``lkb_origin.bn.*`` and, when there is a small kernel,
``small_conv.conv.weight``, ``small_conv.bn.*``. Inference form: one depthwise K×K conv with bias, ``lkb_reparam``,
obtained exactly by fusing both BNs and zero-padding the small kernel into the centre of the large one (RepLKNet's
``structural_reparam``; the math lives in ``unilk.layers.fuse``). SLaK's dense mode (``Decom=False``) uses the same
layer, optionally without BatchNorm.
"""

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import ConfigError
from unilk.layers.depthwise import DepthwiseConv2d
from unilk.layers.fuse import fuse_bn, merge_kernel

__all__ = ["DepthwiseConvBN", "ReparamLargeKernelConv", "check_odd_kernel"]


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_odd_kernel(name: str, size: int | tuple[int, int]) -> tuple[int, int]:
    """Validate a kernel size for a stride-1 "same" depthwise conv and return it as ``(k_h, k_w)``.

    Raises:
        ConfigError: if a side is not a positive odd integer (an even side cannot be centred, so the branches of a
            re-parameterizable layer would not line up).
    """
    k_h, k_w = _pair(size)
    if k_h < 1 or k_w < 1 or k_h % 2 == 0 or k_w % 2 == 0:
        raise ConfigError(f"{name}={size!r} is not valid; expected positive odd kernel sides (e.g. 31, 5 or (31, 5))")
    return k_h, k_w


class DepthwiseConvBN(nn.Module):
    """A bias-free depthwise "same" conv (stride 1) followed by an optional BatchNorm.

    Keys: ``conv.weight`` and, with ``bn=True``, ``bn.{weight,bias,running_mean,running_var,num_batches_tracked}``.

    Args:
        channels: C (depthwise: groups = C).
        kernel_size: ``k`` or ``(k_h, k_w)``, odd sides; padding is ``(k_h // 2, k_w // 2)``.
        bn: follow the conv by a BatchNorm (SLaK's ``--bn``); without it the branch has no bias at all.
        norm_layer: the BatchNorm class (``nn.SyncBatchNorm`` has the same keys).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, int],
        *,
        bn: bool = True,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.kernel_size = check_odd_kernel("kernel_size", kernel_size)
        self.conv = DepthwiseConv2d(channels, self.kernel_size, bias=False)
        self.bn = norm_layer(channels) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        return self._normalise(self.conv(x))  # the conv routes through unilk.ops.lkconv itself

    def _normalise(self, out: Tensor) -> Tensor:
        return out if self.bn is None else self.bn(out)

    def fused_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """Kernel ``(C, 1, k_h, k_w)`` and bias ``(C,)`` of the equivalent conv (eval-mode BN folded in)."""
        if self.bn is None:
            weight = self.conv.weight
            return weight, weight.new_zeros(weight.shape[0])
        return fuse_bn(self.conv.weight, self.bn)


class ReparamLargeKernelConv(nn.Module):
    """Depthwise K×K conv + BN ∥ depthwise k×k conv + BN (train), or one K×K conv with bias (deploy).

    Args:
        channels: C (depthwise: groups = C).
        kernel_size: K, odd.
        small_kernel: k (odd, at most K), or None for no small branch (RepLKNet-XL).
        bn: BatchNorm after each branch (only SLaK's dense mode turns it off).
        deploy: build the inference form (``lkb_reparam``) directly.
        norm_layer: the BatchNorm class of the branches.

    Raises:
        ConfigError: for an even kernel, or a small kernel larger than the large one.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        small_kernel: int | None = 5,
        *,
        bn: bool = True,
        deploy: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.kernel_size = check_odd_kernel("kernel_size", kernel_size)[0]
        if small_kernel is not None:
            check_odd_kernel("small_kernel", small_kernel)
            if small_kernel > kernel_size:
                raise ConfigError(
                    f"small_kernel={small_kernel} is larger than kernel_size={kernel_size}; expected small_kernel <= "
                    "kernel_size, or small_kernel=None for no small branch"
                )
        self.small_kernel = small_kernel
        self.deploy = deploy
        if deploy:
            self.lkb_reparam = DepthwiseConv2d(channels, (self.kernel_size, self.kernel_size), bias=True)
            return
        self.lkb_origin = DepthwiseConvBN(channels, self.kernel_size, bn=bn, norm_layer=norm_layer)
        if small_kernel is not None:
            self.small_conv = DepthwiseConvBN(channels, small_kernel, bn=bn, norm_layer=norm_layer)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``; every conv routes through ``unilk.ops.lkconv`` itself."""
        if hasattr(self, "lkb_reparam"):
            return self.lkb_reparam(x)
        out = self.lkb_origin(x)
        if hasattr(self, "small_conv"):
            out = out + self.small_conv(x)
        return out

    def fused_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The exact inference kernel ``(C, 1, K, K)`` and bias ``(C,)`` (eval-mode BN)."""
        if self.deploy:
            return self.lkb_reparam.weight, self.lkb_reparam.bias
        kernel, bias = self.lkb_origin.fused_kernel_bias()
        if self.small_kernel is not None:
            small, small_bias = self.small_conv.fused_kernel_bias()
            kernel = merge_kernel(kernel, small)
            bias = bias + small_bias
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one depthwise conv with bias (``lkb_reparam``), in place (idempotent)."""
        if self.deploy:
            return
        kernel, bias = self.fused_kernel_bias()
        conv = DepthwiseConv2d(kernel.shape[0], (self.kernel_size, self.kernel_size), bias=True)
        conv = conv.to(device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.lkb_reparam = conv
        del self.lkb_origin
        if self.small_kernel is not None:
            del self.small_conv
        self.deploy = True

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, small_kernel={self.small_kernel}, deploy={self.deploy}"
