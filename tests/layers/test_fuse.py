"""The shared re-parameterization math in unilk.layers.fuse, checked against running the unfused modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unilk.layers.fuse import dilate_kernel, fuse_bn, merge_kernel, pad_kernel


def _random_bn(channels: int, dtype: torch.dtype = torch.float64) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).to(dtype).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.2)
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


@pytest.mark.parametrize("conv_bias", [False, True])
def test_fuse_bn_equals_conv_then_bn(conv_bias: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=conv_bias).double()
    bn = _random_bn(6)
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    kernel, bias = fuse_bn(conv.weight, bn, conv.bias)
    assert (F.conv2d(x, kernel, bias, padding=1) - bn(conv(x))).abs().max() < 1e-12


def test_fuse_bn_works_for_a_linear_kernel() -> None:
    torch.manual_seed(1)
    linear = nn.Linear(5, 3, bias=False).double()
    bn = nn.BatchNorm1d(3).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
    x = torch.randn(4, 5, dtype=torch.float64)
    weight, bias = fuse_bn(linear.weight, bn)
    assert (F.linear(x, weight, bias) - bn(linear(x))).abs().max() < 1e-12


@pytest.mark.parametrize(("k", "r"), [(3, 2), (3, 5), (5, 2), (7, 3), (9, 2)])
def test_dilate_kernel_equals_dilated_conv(k: int, r: int) -> None:
    torch.manual_seed(2)
    weight = torch.randn(3, 1, k, k, dtype=torch.float64)
    x = torch.randn(1, 3, 20, 17, dtype=torch.float64)
    dense = dilate_kernel(weight, r)
    size = (k - 1) * r + 1
    assert dense.shape == (3, 1, size, size)
    expected = F.conv2d(x, weight, padding=r * (k - 1) // 2, dilation=r, groups=3)
    assert (F.conv2d(x, dense, padding=size // 2, groups=3) - expected).abs().max() < 1e-12


def test_pad_kernel_keeps_the_output_and_rejects_bad_sizes() -> None:
    torch.manual_seed(3)
    weight = torch.randn(2, 1, 3, 5, dtype=torch.float64)
    x = torch.randn(1, 2, 11, 12, dtype=torch.float64)
    padded = pad_kernel(weight, (7, 9))
    same = F.conv2d(x, weight, padding=(1, 2), groups=2)
    assert (F.conv2d(x, padded, padding=(3, 4), groups=2) - same).abs().max() < 1e-12
    with pytest.raises(ValueError, match="cannot centre"):
        pad_kernel(weight, 4)


def test_merge_kernel_equals_two_parallel_convs() -> None:
    torch.manual_seed(4)
    large, small = torch.randn(2, 1, 13, 13, dtype=torch.float64), torch.randn(2, 1, 3, 3, dtype=torch.float64)
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    expected = F.conv2d(x, large, padding=6, groups=2) + F.conv2d(x, small, padding=5, dilation=5, groups=2)
    merged = merge_kernel(large, small, 5)
    assert (F.conv2d(x, merged, padding=6, groups=2) - expected).abs().max() < 1e-12
