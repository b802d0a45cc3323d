"""The shared re-parameterization math: BatchNorm fusion, dilated-to-dense kernels, kernel padding.

Every re-parameterizable layer of the three trunks (UniRepLKNet, SLaK, RepLKNet) uses these functions; no other
module re-implements them. All functions are pure, work in any floating dtype and keep the input's dtype and device.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["fuse_bn", "dilate_kernel", "pad_kernel", "merge_kernel"]


def fuse_bn(kernel: Tensor, bn: nn.BatchNorm2d | nn.BatchNorm1d, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BatchNorm that follows a convolution into the convolution's kernel and bias.

    With ``s = gamma / sqrt(running_var + eps)``: ``W' = W * s`` (per output channel) and
    ``b' = beta + (b - running_mean) * s``, where ``b = 0`` when the convolution has no bias.

    Args:
        kernel: convolution weight, shape ``(C_out, ...)``.
        bn: the BatchNorm over ``C_out`` channels (its running statistics are used).
        bias: the convolution's bias ``(C_out,)``, or None.

    Returns:
        ``(kernel, bias)`` of the fused convolution, shapes ``(C_out, ...)`` and ``(C_out,)``.
    """
    std = (bn.running_var.to(kernel.dtype) + bn.eps).sqrt()
    gamma = bn.weight.to(kernel.dtype) if bn.affine else torch.ones_like(std)
    beta = bn.bias.to(kernel.dtype) if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    conv_bias = torch.zeros_like(std) if bias is None else bias.to(kernel.dtype)
    fused_kernel = kernel * scale.reshape(-1, *([1] * (kernel.dim() - 1)))
    fused_bias = beta + (conv_bias - bn.running_mean.to(kernel.dtype)) * scale
    return fused_kernel, fused_bias


def dilate_kernel(kernel: Tensor, dilation: int | tuple[int, int]) -> Tensor:
    """Turn a dilated kernel into the equivalent dense one by inserting zeros between its taps.

    Element ``(i, j)`` moves to ``(i * r_h, j * r_w)``; every other element of the result is zero.

    Args:
        kernel: shape ``(C_out, C_in_per_group, k_h, k_w)``.
        dilation: the dilation ``r`` (or ``(r_h, r_w)``) of the convolution the kernel belongs to.

    Returns:
        Shape ``(C_out, C_in_per_group, (k_h - 1) r_h + 1, (k_w - 1) r_w + 1)``.
    """
    r_h, r_w = (dilation, dilation) if isinstance(dilation, int) else dilation
    if r_h == 1 and r_w == 1:
        return kernel
    c_out, c_in, k_h, k_w = kernel.shape
    dense = kernel.new_zeros(c_out, c_in, (k_h - 1) * r_h + 1, (k_w - 1) * r_w + 1)
    dense[:, :, ::r_h, ::r_w] = kernel
    return dense


def pad_kernel(kernel: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Zero-pad a kernel symmetrically to a larger (odd-sided) size, keeping it centred.

    A centred ``k_h x k_w`` kernel padded to ``K_h x K_w`` gives the same output as the original under "same" padding,
    which is how a small branch is merged into a large one.

    Args:
        kernel: shape ``(C_out, C_in_per_group, k_h, k_w)``.
        size: target ``K`` or ``(K_h, K_w)``; each side must be at least the kernel's and differ from it by an even
            number.

    Returns:
        Shape ``(C_out, C_in_per_group, K_h, K_w)``.

    Raises:
        ValueError: if the target is smaller than the kernel or the difference is odd.
    """
    target_h, target_w = (size, size) if isinstance(size, int) else size
    k_h, k_w = kernel.shape[-2:]
    pad_h, pad_w = target_h - k_h, target_w - k_w
    if pad_h < 0 or pad_w < 0 or pad_h % 2 or pad_w % 2:
        raise ValueError(
            f"cannot centre a {k_h}x{k_w} kernel in {target_h}x{target_w}: the target must be at least as large "
            "and differ by an even number on each side"
        )
    return nn.functional.pad(kernel, (pad_w // 2, pad_w // 2, pad_h // 2, pad_h // 2))


def merge_kernel(large: Tensor, small: Tensor, dilation: int | tuple[int, int] = 1) -> Tensor:
    """Add a (possibly dilated) smaller centred kernel into a larger one of the same convolution's "same" output.

    ``large + pad_kernel(dilate_kernel(small, dilation), large_size)``: two parallel stride-1 "same" convolutions
    over one input equal one convolution with the merged kernel (biases add separately).

    Args:
        large: ``(C_out, C_in_per_group, K_h, K_w)``.
        small: ``(C_out, C_in_per_group, k_h, k_w)`` whose dilated size ``(k - 1) r + 1`` fits in ``K``.
        dilation: the small convolution's dilation ``r`` (or ``(r_h, r_w)``).

    Returns:
        ``(C_out, C_in_per_group, K_h, K_w)``.

    Raises:
        ValueError: if the dilated small kernel does not fit centred in the large one.
    """
    return large + pad_kernel(dilate_kernel(small, dilation), tuple(large.shape[-2:]))
