"""SLaK's decomposed large-kernel layer: per-axis padding, official keys, exact decomposed and dense deploy forms."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from unilk.errors import ConfigError
from unilk.layers.decomposed import DecomposedLargeKernelConv


def _reference(x: torch.Tensor, layer: DecomposedLargeKernelConv) -> torch.Tensor:
    """The official arithmetic written out: each branch conv (per-axis same padding) + its BN, summed."""
    out = 0
    for name in ("LoRA1", "LoRA2", "small_conv"):
        branch = getattr(layer, name, None)
        if branch is None:
            continue
        weight = branch.conv.weight
        y = F.conv2d(x, weight, padding=(weight.shape[2] // 2, weight.shape[3] // 2), groups=x.shape[1])
        if branch.bn is not None:
            bn = branch.bn
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        out = out + y
    return out


@pytest.mark.parametrize(
    ("kernel", "small", "bn", "shape"),
    [
        (13, 5, True, (2, 6, 9, 17)),  # non-square map, kernel larger than the map's height
        (31, 5, True, (1, 4, 8, 8)),  # kernel far larger than the map
        (7, 3, False, (2, 3, 11, 6)),  # no BN: no bias at all
        (5, 5, True, (1, 3, 7, 7)),  # N == M: no square branch
        (3, 5, True, (1, 3, 6, 9)),  # N > M: still no square branch, dense form is 5x5
    ],
)
def test_train_matches_reference_and_both_deploy_forms(
    kernel: int, small: int, bn: bool, shape: tuple, randomize: Any
) -> None:
    layer = randomize(DecomposedLargeKernelConv(shape[1], kernel, small, bn=bn)).eval().double()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        train = layer(x)
        torch.testing.assert_close(train, _reference(x, layer), rtol=0, atol=1e-12)
        assert train.shape == x.shape
        assert hasattr(layer, "small_conv") == (small < kernel)
        layer.reparameterize()
        decomposed = layer(x)
        layer.reparameterize(dense=True)
        dense = layer(x)
    torch.testing.assert_close(decomposed, train, rtol=0, atol=1e-10)
    torch.testing.assert_close(dense, train, rtol=0, atol=1e-10)
    side = max(kernel, small)
    assert layer.lkb_reparam.weight.shape == (shape[1], 1, side, side)


def test_fp32_deploy_within_tolerance(randomize: Any) -> None:
    layer = randomize(DecomposedLargeKernelConv(8, 31, 5)).eval()
    x = torch.randn(2, 8, 20, 24)
    with torch.no_grad():
        train = layer(x)
        layer.reparameterize()
        torch.testing.assert_close(layer(x), train, rtol=0, atol=1e-5)


def test_official_keys_and_shapes() -> None:
    layer = DecomposedLargeKernelConv(4, 31, 5)
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = []
    for name in ("LoRA1", "LoRA2", "small_conv"):
        expected += [f"{name}.conv.weight"] + [f"{name}.bn.{b}" for b in bn]
    state = layer.state_dict()
    assert list(state) == expected
    assert state["LoRA1.conv.weight"].shape == (4, 1, 31, 5)
    assert state["LoRA2.conv.weight"].shape == (4, 1, 5, 31)
    assert state["small_conv.conv.weight"].shape == (4, 1, 5, 5)
    no_bn = DecomposedLargeKernelConv(4, 31, 5, bn=False).state_dict()
    assert list(no_bn) == ["LoRA1.conv.weight", "LoRA2.conv.weight", "small_conv.conv.weight"]


def test_deploy_build_has_the_reparameterized_keys(randomize: Any) -> None:
    layer = randomize(DecomposedLargeKernelConv(4, 13, 5)).eval()
    layer.reparameterize()
    built = DecomposedLargeKernelConv(4, 13, 5, deploy=True)
    shapes = {k: v.shape for k, v in layer.state_dict().items()}
    assert shapes == {k: v.shape for k, v in built.state_dict().items()}
    assert list(shapes) == ["LoRA1.weight", "LoRA1.bias", "LoRA2.weight"]
    built.load_state_dict(layer.state_dict(), strict=True)
    dense = DecomposedLargeKernelConv(4, 13, 5, deploy=True, merge_dense=True)
    assert list(dense.state_dict()) == ["lkb_reparam.weight", "lkb_reparam.bias"]


def test_fold_changes_only_the_centre_and_keeps_sparsity(randomize: Any) -> None:
    layer = randomize(DecomposedLargeKernelConv(3, 11, 3)).eval()
    with torch.no_grad():  # a sparse LoRA1 kernel, as SLaK's dynamic sparsity leaves it
        mask = torch.rand(layer.LoRA1.conv.weight.shape, generator=torch.Generator().manual_seed(2)) < 0.5
        layer.LoRA1.conv.weight.mul_(mask)
    tall, wide, _ = layer.fused_kernels()
    outside = torch.ones(11, 3, dtype=torch.bool)
    outside[4:7, :] = False
    assert torch.all((tall[:, 0][:, outside] == 0) == ~mask[:, 0][:, outside])
    assert wide.shape == (3, 1, 3, 11)


def test_reparameterize_is_idempotent_and_dense_is_final(randomize: Any) -> None:
    layer = randomize(DecomposedLargeKernelConv(2, 7, 3, merge_dense=True)).eval()
    x = torch.randn(1, 2, 9, 9)
    with torch.no_grad():
        ref = layer(x)
        layer.reparameterize()
        layer.reparameterize()
        layer.reparameterize(dense=False)  # a dense layer cannot go back to two rectangles
        torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-5)
    assert list(layer.state_dict()) == ["lkb_reparam.weight", "lkb_reparam.bias"]
    with pytest.raises(RuntimeError, match="dense"):
        layer.fused_kernels()


@pytest.mark.parametrize(("kernel", "small"), [(30, 5), (31, 4), (0, 5)])
def test_even_or_empty_kernels_are_rejected(kernel: int, small: int) -> None:
    with pytest.raises(ConfigError, match="odd"):
        DecomposedLargeKernelConv(4, kernel, small)
