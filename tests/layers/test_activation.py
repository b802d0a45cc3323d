"""GELU(inplace=True): the same values as F.gelu, in place only where no autograd graph is recorded."""

import torch
import torch.nn.functional as F

from unilk.layers.activation import GELU


def test_in_place_without_autograd_and_bitwise_equal() -> None:
    x = torch.randn(2, 3, 8, 8)
    want = F.gelu(x)
    got = GELU(inplace=True)(x)
    assert got.data_ptr() == x.data_ptr()  # overwrote its input
    assert torch.equal(got, want)
    y = torch.randn(4, 5)
    assert GELU()(y).data_ptr() != y.data_ptr()  # the default is nn.GELU's


def test_out_of_place_under_autograd_with_the_right_gradient() -> None:
    x = torch.randn(3, 7, requires_grad=True)
    out = GELU(inplace=True)(x * 1.0)
    (grad,) = torch.autograd.grad(out.sum(), x)
    ref_x = x.detach().requires_grad_()
    (want,) = torch.autograd.grad(F.gelu(ref_x).sum(), ref_x)
    assert torch.equal(grad, want)


def test_traced_and_scripted_forms_are_plain_gelu() -> None:
    module = GELU(inplace=True)
    x = torch.randn(2, 4)
    traced = torch.fx.symbolic_trace(module)
    scripted = torch.jit.script(module)
    assert torch.equal(traced(x.clone()), F.gelu(x))
    assert torch.equal(scripted(x.clone()), F.gelu(x))
