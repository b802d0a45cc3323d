"""Depthwise conv modules route through unilk.ops.lkconv themselves (so their hooks fire) and follow set_fast_path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from unilk.layers.decomposed import DecomposedLargeKernelConv
from unilk.layers.depthwise import DepthwiseConv2d
from unilk.layers.dilated_reparam import DilatedReparamBlock
from unilk.layers.fast_path import set_fast_path, uses_fast_path
from unilk.ops import lkconv


def _counting_route(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the kernel shape of every ``depthwise_conv2d`` call the modules make."""
    calls: list[tuple[int, ...]] = []
    real = lkconv.depthwise_conv2d

    def counting(x: Tensor, weight: Tensor, bias: Tensor | None = None, **kwargs: Any) -> Tensor:
        calls.append(tuple(weight.shape))
        return real(x, weight, bias, **kwargs)

    monkeypatch.setattr("unilk.layers.depthwise.depthwise_conv2d", counting)
    return calls


@pytest.mark.parametrize("kernel", [(13, 13), (5, 17)])
def test_depthwise_conv_module_equals_nn_conv2d_and_routes_unless_plain(
    monkeypatch: pytest.MonkeyPatch, kernel: tuple[int, int]
) -> None:
    calls = _counting_route(monkeypatch)
    torch.manual_seed(0)
    conv = DepthwiseConv2d(6, kernel, bias=True)
    reference = nn.Conv2d(6, 6, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=6)
    reference.load_state_dict(conv.state_dict())  # same keys
    x = torch.randn(2, 6, 20, 24)
    torch.testing.assert_close(conv(x), reference(x), rtol=1e-5, atol=1e-6)
    assert calls == [(6, 1, *kernel)]
    conv.fast_path = False
    assert torch.equal(conv(x), reference(x))  # the plain build is nn.Conv2d's own call
    assert len(calls) == 1


def test_hooks_on_the_large_kernel_conv_fire_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_route(monkeypatch)
    block = DilatedReparamBlock(4, 13).eval()
    seen: list[tuple[int, ...]] = []
    block.lk_origin.register_forward_hook(lambda _m, _args, out: seen.append(tuple(out.shape)))
    block(torch.randn(1, 4, 16, 16))
    assert seen == [(1, 4, 16, 16)]
    assert (4, 1, 13, 13) in calls  # ...and the call still went through unilk.ops.lkconv


def test_a_hook_on_a_decomposed_rectangle_fires_and_the_sum_is_unchanged() -> None:
    torch.manual_seed(1)
    layer = DecomposedLargeKernelConv(4, 15, 3).eval()
    for module in layer.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.running_mean, 0, 0.3)
    layer.reparameterize()
    x = torch.randn(2, 4, 18, 18)
    with torch.inference_mode():
        summed = layer(x)  # no hook: the in-place sum of the two rectangles
        seen: list[bool] = []
        layer.LoRA2.register_forward_hook(lambda *_: seen.append(True))
        hooked = layer(x)
    assert seen == [True]
    torch.testing.assert_close(hooked, summed, rtol=1e-6, atol=1e-6)


def test_set_fast_path_reaches_every_layer_and_survives_reparameterize() -> None:
    from unilk.models import create_model

    model = create_model("test_unireplknet", num_classes=3).eval()
    assert uses_fast_path(model)
    model.set_fast_path(False)
    model.reparameterize()  # builds new conv modules: they follow the model's choice
    assert not uses_fast_path(model)
    set_fast_path(model, True)
    assert all(m.fast_path for m in model.modules() if hasattr(m, "fast_path"))
