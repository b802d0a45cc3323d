"""The fused UniRepLKNet block tail equals the module chain SE -> Linear -> GELU -> GRN -> Linear, values and grads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unilk.layers.grn import GRNwithNHWC
from unilk.layers.se import SEBlock
from unilk.ops.fused import fused_enabled, fused_tail, se_gate, unireplknet_block_tail
from unilk.ops.lkconv import lkconv_mode


class _Tail(nn.Module):
    """The unfused chain, built from the shared layers the way a UniRepLKNet block wires them."""

    def __init__(self, dim: int, use_beta: bool, fc2_bias: bool) -> None:
        super().__init__()
        self.se = SEBlock(dim, dim // 4)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.grn = GRNwithNHWC(4 * dim, use_bias=use_beta)
        self.fc2 = nn.Linear(4 * dim, dim, bias=fc2_bias)
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, 0.3)

    def forward(self, y: Tensor) -> Tensor:
        h = self.fc1(self.se(y).permute(0, 2, 3, 1))
        return self.fc2(self.grn(F.gelu(h))).permute(0, 3, 1, 2)

    def fused(self, y: Tensor) -> Tensor:
        return unireplknet_block_tail(
            y, self.se.down.weight, self.se.down.bias, self.se.up.weight, self.se.up.bias, self.fc1.weight,
            self.fc1.bias, self.grn.gamma, self.grn.beta, self.fc2.weight, self.fc2.bias,
        )  # fmt: skip


def _rel(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize(("dim", "size"), [(8, 12), (16, 3)])  # weight-side scaling (H*W > C) and map-side scaling
@pytest.mark.parametrize(("use_beta", "fc2_bias"), [(True, True), (False, True), (True, False)])
def test_tail_matches_module_chain_with_gradients(dim: int, size: int, use_beta: bool, fc2_bias: bool) -> None:
    torch.manual_seed(dim + size)
    tail = _Tail(dim, use_beta, fc2_bias).double()
    y = torch.randn(3, dim, size, size + 1, dtype=torch.float64, requires_grad=True)
    ref, out = tail(y), tail.fused(y)
    assert out.shape == ref.shape == y.shape
    assert _rel(out, ref) <= 1e-12
    grad_out = torch.randn_like(ref)
    params = [y, *tail.parameters()]
    ref_grads = torch.autograd.grad(ref, params, grad_out)
    grads = torch.autograd.grad(out, params, grad_out)
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) <= 1e-10


def test_tail_float32_within_1e5() -> None:
    torch.manual_seed(0)
    tail = _Tail(24, True, True)
    y = torch.randn(2, 24, 14, 14)
    with torch.inference_mode():
        assert _rel(tail.fused(y), tail(y)) <= 1e-5


def test_se_gate_is_the_se_block_gate() -> None:
    torch.manual_seed(1)
    se = SEBlock(12, 3)
    x = torch.randn(2, 12, 5, 5)
    gate = se_gate(x, se.down.weight, se.down.bias, se.up.weight, se.up.bias)
    assert gate.shape == (2, 12)
    assert torch.allclose(x * gate[:, :, None, None], se(x), atol=1e-6)


def test_fused_tail_is_opt_in_and_off_in_plain_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNILK_FUSED_TAIL", raising=False)
    with lkconv_mode("auto"):
        assert not fused_enabled()  # default: the official operation order
        with fused_tail():
            assert fused_enabled()
        monkeypatch.setenv("UNILK_FUSED_TAIL", "1")
        assert fused_enabled()
        with fused_tail(False):
            assert not fused_enabled()
    with lkconv_mode("plain"), fused_tail():
        assert not fused_enabled()


@pytest.mark.parametrize("deploy", [False, True], ids=["train-form", "deploy-form"])
def test_unireplknet_with_fused_tail_matches_the_module_chain(deploy: bool) -> None:
    import unilk
    from unilk.models import UniRepLKNet

    torch.manual_seed(0)
    kernels = ((3,), (13,), (13, 3), (11,))
    model = UniRepLKNet(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_sizes=kernels, num_classes=5).eval()
    for module in model.modules():  # non-trivial GRN and BN statistics so every folded term matters
        if hasattr(module, "beta") and isinstance(module.beta, torch.nn.Parameter):
            torch.nn.init.normal_(module.gamma, std=0.5)
            torch.nn.init.normal_(module.beta, std=0.2)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    if deploy:
        unilk.reparameterize(model)
    x = torch.randn(2, 3, 96, 80, requires_grad=True)
    reference = model(x)
    (grad_reference,) = torch.autograd.grad(reference.sum(), x)
    with fused_tail():
        fused = model(x)
        (grad_fused,) = torch.autograd.grad(fused.sum(), x)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_fused, grad_reference, rtol=1e-4, atol=1e-6)
