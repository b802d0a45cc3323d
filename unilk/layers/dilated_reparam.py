"""The Dilated Reparam Block (DRB): a large depthwise kernel plus parallel dilated small kernels, each with its own BN.

UniRepLKNet's large-kernel spatial mixer. Training form: ``origin_bn(lk_origin(x)) + Σ dil_bn_k{k}_{r}(
dil_conv_k{k}_{r}(x))``. Inference form: one depthwise ``lk_origin`` conv with bias, obtained exactly by fusing every BN
and merging each dilated kernel into the large one (``unilk.layers.fuse``).
"""

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import ConfigError
from unilk.layers.depthwise import DepthwiseConv2d
from unilk.layers.fuse import fuse_bn, merge_kernel

__all__ = ["DRB_BRANCHES", "DilatedReparamBlock"]

# kernel size K -> the (small kernel k, dilation r) of its parallel branches, in the official (= key) order
DRB_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    7: ((5, 1), (3, 2), (3, 3)),
    5: ((3, 1), (3, 2)),
}


class DilatedReparamBlock(nn.Module):
    """Depthwise K×K conv with parallel dilated branches (train) or a single K×K conv with bias (deploy).

    Keys (train): ``lk_origin.weight``, ``origin_bn.*``, then per branch ``dil_conv_k{k}_{r}.weight`` and
    ``dil_bn_k{k}_{r}.*``. Keys (deploy): ``lk_origin.{weight,bias}``.

    Args:
        channels: C (depthwise: groups = C).
        kernel_size: K, one of ``DRB_BRANCHES`` (5, 7, 9, 11, 13, 15, 17).
        deploy: build the inference form directly.
        norm_layer: the BatchNorm class of the branches (``nn.SyncBatchNorm`` has the same keys).

    Raises:
        ConfigError: for an unsupported kernel size.
    """

    def __init__(
        self, channels: int, kernel_size: int, *, deploy: bool = False, norm_layer: type[nn.Module] = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        if kernel_size not in DRB_BRANCHES:
            raise ConfigError(
                f"DilatedReparamBlock kernel_size={kernel_size!r} is not supported; expected one of "
                f"{sorted(DRB_BRANCHES)} (use a plain depthwise conv for 3)"
            )
        self.kernel_size = kernel_size
        self.branches = DRB_BRANCHES[kernel_size]
        self.deploy = deploy
        self.lk_origin = DepthwiseConv2d(channels, kernel_size, bias=deploy)
        if deploy:
            return
        self.origin_bn = norm_layer(channels)
        for k, r in self.branches:
            self.add_module(f"dil_conv_k{k}_{r}", DepthwiseConv2d(channels, k, dilation=r))
            self.add_module(f"dil_bn_k{k}_{r}", norm_layer(channels))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``; ``lk_origin`` routes through ``unilk.ops.lkconv`` itself."""
        # module calls in registration order (conv, its BN, conv, its BN, ...): scriptable without computed names
        out = self.lk_origin(x)
        branch = x
        for name, module in self.named_children():
            if name == "origin_bn":
                out = module(out)
            elif name.startswith("dil_conv"):
                branch = module(x)
            elif name.startswith("dil_bn"):
                out = out + module(branch)
        return out

    def fused_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The exact inference kernel ``(C, 1, K, K)`` and bias ``(C,)`` of the current (eval-mode BN) branches."""
        if self.deploy:
            return self.lk_origin.weight, self.lk_origin.bias
        kernel, bias = fuse_bn(self.lk_origin.weight, self.origin_bn)
        for k, r in self.branches:
            branch_kernel, branch_bias = fuse_bn(
                getattr(self, f"dil_conv_k{k}_{r}").weight, getattr(self, f"dil_bn_k{k}_{r}")
            )
            kernel = merge_kernel(kernel, branch_kernel, r)
            bias = bias + branch_bias
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one depthwise conv with bias, in place (idempotent)."""
        if self.deploy:
            return
        kernel, bias = self.fused_kernel_bias()
        channels = kernel.shape[0]
        conv = DepthwiseConv2d(channels, self.kernel_size, bias=True).to(device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.lk_origin = conv
        del self.origin_bn
        for k, r in self.branches:
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")
        self.deploy = True

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, deploy={self.deploy}"
