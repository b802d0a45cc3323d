"""RepLKNet's large-kernel layer: official keys, exact merge of the small kernel (structural re-parameterization)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from unilk.errors import ConfigError
from unilk.layers.replk import DepthwiseConvBN, ReparamLargeKernelConv


def _conv_bn(x: torch.Tensor, branch: DepthwiseConvBN) -> torch.Tensor:
    weight, bn = branch.conv.weight, branch.bn
    y = F.conv2d(x, weight, padding=weight.shape[-1] // 2, groups=x.shape[1])
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


@pytest.mark.parametrize(
    ("kernel", "small", "shape"),
    [(13, 5, (2, 4, 9, 14)), (31, 5, (1, 3, 8, 8)), (9, None, (1, 3, 10, 7)), (5, 5, (1, 2, 6, 6))],
)
def test_merge_is_exact_in_fp64(kernel: int, small: int | None, shape: tuple, randomize: Any) -> None:
    layer = randomize(ReparamLargeKernelConv(shape[1], kernel, small)).eval().double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        train = layer(x)
        reference = _conv_bn(x, layer.lkb_origin) + (0 if small is None else _conv_bn(x, layer.small_conv))
        torch.testing.assert_close(train, reference, rtol=0, atol=1e-12)
        layer.reparameterize()
        layer.reparameterize()  # idempotent
        torch.testing.assert_close(layer(x), train, rtol=0, atol=1e-10)
    assert list(layer.state_dict()) == ["lkb_reparam.weight", "lkb_reparam.bias"]
    assert layer.lkb_reparam.weight.shape == (shape[1], 1, kernel, kernel)


def test_official_keys_and_deploy_build(randomize: Any) -> None:
    layer = ReparamLargeKernelConv(4, 13, 5)
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert list(layer.state_dict()) == [f"{b}.{k}" for b in ("lkb_origin", "small_conv")
                                        for k in ["conv.weight", *(f"bn.{n}" for n in bn)]]  # fmt: skip
    assert not any(k.startswith("small_conv") for k in ReparamLargeKernelConv(4, 13, None).state_dict())
    no_bn = ReparamLargeKernelConv(4, 13, 5, bn=False).state_dict()
    assert list(no_bn) == ["lkb_origin.conv.weight", "small_conv.conv.weight"]
    randomize(layer).eval().reparameterize()
    built = ReparamLargeKernelConv(4, 13, 5, deploy=True)
    built.load_state_dict(layer.state_dict(), strict=True)


def test_without_bn_the_merge_has_zero_bias(randomize: Any) -> None:
    layer = randomize(ReparamLargeKernelConv(3, 7, 3, bn=False)).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        ref = layer(x)
        layer.reparameterize()
        torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-5)
    assert torch.all(layer.lkb_reparam.bias == 0)


@pytest.mark.parametrize(("kernel", "small"), [(13, 15), (12, 5), (13, 4)])
def test_bad_kernels_are_rejected(kernel: int, small: int) -> None:
    with pytest.raises(ConfigError, match=r"small_kernel|kernel_size"):
        ReparamLargeKernelConv(4, kernel, small)
