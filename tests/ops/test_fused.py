"""The fused block tails (UniRepLKNet, SLaK) equal their module chains, values and gradients; the fast-path switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import unilk.ops.fused as unilk_fused
from unilk.errors import ConfigError
from unilk.layers.grn import GRNwithNHWC
from unilk.layers.se import SEBlock
from unilk.ops.fused import (
    convnext_block_tail,
    fast_path_from_env,
    fused_enabled,
    fused_tail,
    release_workspace,
    unireplknet_block_tail,
)
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
        return unireplknet_block_tail(y, self.se.gate(y), self.fc1, self.grn, self.fc2)


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
    gate = se.gate(x)
    assert gate.shape == (2, 12)
    assert torch.allclose(x * gate[:, :, None, None], se(x), atol=1e-6)


def test_fast_path_is_the_default_overridable_and_off_in_plain_mode() -> None:
    with lkconv_mode("auto"):
        assert fused_enabled()  # a layer's default choice
        assert not fused_enabled(False)  # a layer set to the plain build
        with fused_tail(False):
            assert not fused_enabled()
        with fused_tail():
            assert fused_enabled(False)
    with lkconv_mode("plain"), fused_tail():
        assert not fused_enabled()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        ({"UNILK_FAST_PATH": "0"}, False),
        ({"UNILK_FAST_PATH": " Off "}, False),
        ({"UNILK_FAST_PATH": "1"}, True),
        ({"UNILK_FUSED_TAIL": "0"}, False),  # the earlier name still works
        ({"UNILK_FUSED_TAIL": "1"}, True),
        ({"UNILK_FAST_PATH": "1", "UNILK_FUSED_TAIL": "0"}, True),  # the new name wins
    ],
)
def test_fast_path_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool) -> None:
    for name in ("UNILK_FAST_PATH", "UNILK_FUSED_TAIL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert fast_path_from_env() is expected


def test_a_bad_fast_path_value_is_refused_when_the_model_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from unilk.models import UniRepLKNet

    monkeypatch.setenv("UNILK_FAST_PATH", "fastest")
    with pytest.raises(ConfigError, match=r"UNILK_FAST_PATH='fastest'.*allowed values: 1, on, true, yes"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (5,), (3,), (3,)))


def test_the_environment_is_read_once_at_build_not_in_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    from unilk.layers.fast_path import uses_fast_path
    from unilk.models.slak import SLaK

    monkeypatch.setenv("UNILK_FAST_PATH", "0")
    model = SLaK(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_size=(7, 7, 7, 7, 3), num_classes=3).eval()
    assert not uses_fast_path(model)  # every layer follows the build-time choice
    monkeypatch.setenv("UNILK_FAST_PATH", "not-a-value")  # a forward never looks at the environment
    with torch.inference_mode():
        model(torch.randn(1, 3, 32, 32))
    model.set_fast_path(True)
    assert all(m.fast_path for m in model.modules() if hasattr(m, "fast_path"))


def _check_fused_model(model: nn.Module, deploy: bool, x: Tensor) -> None:
    """Fused tails change outputs and input gradients only by float rounding, with and without autograd."""
    import unilk

    if deploy:
        unilk.reparameterize(model)
    x.requires_grad_(True)
    model.set_fast_path(False)
    reference = model(x)
    (grad_reference,) = torch.autograd.grad(reference.sum(), x)
    model.set_fast_path(True)
    fused = model(x)
    (grad_fused,) = torch.autograd.grad(fused.sum(), x)
    with torch.inference_mode():
        inference = model(x.detach())
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inference, reference.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_fused, grad_reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("deploy", [False, True], ids=["train-form", "deploy-form"])
def test_unireplknet_with_fused_tail_matches_the_module_chain(deploy: bool) -> None:
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
    _check_fused_model(model, deploy, torch.randn(2, 3, 96, 80))


class _ConvNeXtTail(nn.Module):
    """SLaK's block tail as its modules run it: channels-last LayerNorm -> Linear -> GELU -> Linear -> gamma."""

    def __init__(self, dim: int, hidden: int, use_gamma: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.randn(dim)) if use_gamma else None
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, 0.3)

    def forward(self, y: Tensor, residual: Tensor | None) -> Tensor:
        out = self.fc2(F.gelu(self.fc1(self.norm(y.permute(0, 2, 3, 1)))))
        out = (out if self.gamma is None else self.gamma * out).permute(0, 3, 1, 2)
        return out if residual is None else residual + out

    def fused(self, y: Tensor, residual: Tensor | None) -> Tensor:
        return convnext_block_tail(y, self.norm, self.fc1, self.fc2, self.gamma, residual)


# (dim, hidden, size): N*H*W > hidden folds the affine parts into the weights; N*H*W <= hidden scales the map.
@pytest.mark.parametrize(("dim", "hidden", "size"), [(6, 24, 7), (12, 48, 3)])
@pytest.mark.parametrize("use_gamma", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
def test_convnext_tail_matches_module_chain_with_gradients(
    dim: int, hidden: int, size: int, use_gamma: bool, with_residual: bool
) -> None:
    torch.manual_seed(dim + size)
    tail = _ConvNeXtTail(dim, hidden, use_gamma).double()
    y = torch.randn(2, dim, size, size + 2, dtype=torch.float64, requires_grad=True)
    residual = torch.randn_like(y, requires_grad=True) if with_residual else None
    ref, out = tail(y, residual), tail.fused(y, residual)
    assert out.shape == y.shape
    assert out.is_contiguous()
    assert _rel(out, ref) <= 1e-12
    grad_out = torch.randn_like(ref)
    params = [y, *([residual] if with_residual else []), *tail.parameters()]
    for got, want in zip(torch.autograd.grad(out, params, grad_out), torch.autograd.grad(ref, params, grad_out)):
        assert _rel(got, want) <= 1e-10


@pytest.mark.parametrize(("dim", "hidden", "size"), [(6, 24, 7), (12, 48, 3)])
def test_convnext_tail_inference_in_place_float32(dim: int, hidden: int, size: int) -> None:
    torch.manual_seed(3)
    tail = _ConvNeXtTail(dim, hidden, use_gamma=True)
    y, residual = torch.randn(2, dim, size, size), torch.randn(2, dim, size, size)
    with torch.inference_mode():
        ref = tail(y, residual)
        residual_before = residual.clone()
        out = tail.fused(y.clone(), residual)  # y is a temporary the tail may overwrite; the shortcut is not
    assert _rel(out, ref) <= 1e-5
    assert torch.equal(residual, residual_before)


def test_workspace_is_reused_and_never_returned() -> None:
    torch.manual_seed(4)
    release_workspace()
    tail = _Tail(8, use_beta=False, fc2_bias=True)
    y1, y2 = torch.randn(2, 8, 9, 9), torch.randn(2, 8, 9, 9)
    with torch.inference_mode():
        out1 = tail.fused(y1)
        first = out1.clone()
        out2 = tail.fused(y2)  # reuses the hidden-map buffer; must not touch out1
        assert torch.equal(out1, first)
        assert _rel(out2, tail(y2)) <= 1e-5
        workspace = unilk_fused._workspace.buffers[unilk_fused.HIDDEN]
        assert workspace.numel() >= 2 * 32 * 81
        assert out1.data_ptr() != workspace.data_ptr()
        assert out2.data_ptr() != workspace.data_ptr()
    release_workspace()
    assert not unilk_fused._workspace.buffers


@pytest.mark.parametrize("deploy", [False, True], ids=["train-form", "deploy-form"])
def test_slak_with_fused_tail_matches_the_module_chain(deploy: bool) -> None:
    from unilk.models.slak import SLaK

    torch.manual_seed(0)
    kernels = (13, 11, 9, 7, 3)  # large kernels per stage, then the short side N
    model = SLaK(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_size=kernels, num_classes=5).eval()
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            torch.nn.init.normal_(module.weight, 1.0, 0.3)
            torch.nn.init.normal_(module.bias, 0.0, 0.3)
        if hasattr(module, "gamma") and isinstance(module.gamma, nn.Parameter):
            torch.nn.init.normal_(module.gamma, 0.0, 0.5)
    _check_fused_model(model, deploy, torch.randn(2, 3, 64, 80))


def _reference_linear(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool) -> Tensor:
    out = F.linear(x, weight, bias)
    return F.gelu(out) if gelu else out


def _count_channels_last_linears(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Replace the oneDNN linear by F.linear (+ GELU) that records each call's ``gelu`` flag in the returned list."""
    calls: list[bool] = []

    def counting_linear(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool) -> Tensor:
        calls.append(gelu)
        return _reference_linear(x, weight, bias, gelu)

    monkeypatch.setattr(unilk_fused, "onednn_linear", lambda: counting_linear)
    return calls


@pytest.mark.parametrize("with_residual", [True, False])
def test_small_map_tail_takes_the_channels_last_linear(monkeypatch: pytest.MonkeyPatch, with_residual: bool) -> None:
    # H*W <= D without autograd: the tail runs its Linears through the (oneDNN) channels-last linear.
    calls = _count_channels_last_linears(monkeypatch)
    torch.manual_seed(5)
    tail = _Tail(32, use_beta=True, fc2_bias=True)
    y = torch.randn(3, 32, 7, 6)
    residual = torch.randn_like(y) if with_residual else None
    with torch.inference_mode():
        want = tail(y) + (residual if with_residual else 0)
        got = unireplknet_block_tail(y, tail.se.gate(y), tail.fc1, tail.grn, tail.fc2, residual)
    assert calls == [True, False]
    assert got.shape == y.shape
    assert got.is_contiguous()
    assert _rel(got, want) <= 1e-5


def test_onednn_linear_probe_agrees_with_f_linear() -> None:
    from unilk.ops._onednn import onednn_linear

    fn = onednn_linear()
    if fn is None:  # this PyTorch build has no working oneDNN linear: the tails use torch.matmul instead
        assert unilk_fused.onednn_linear() is None
        return
    gen = torch.Generator().manual_seed(6)
    x, weight, bias = torch.randn(50, 64, generator=gen), torch.randn(96, 64, generator=gen), torch.randn(96)
    for gelu in (True, False):
        assert _rel(fn(x, weight, bias, gelu), _reference_linear(x, weight, bias, gelu)) <= 1e-5


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
def test_channel_layer_norm_matches_layer_norm_2d(channels_last: bool) -> None:
    from unilk.layers.norm import layer_norm_2d
    from unilk.ops.fused import channel_layer_norm

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 12, 9, 7, dtype=torch.float64, generator=gen) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(12, dtype=torch.float64, generator=gen), torch.randn(12, dtype=torch.float64)
    want = layer_norm_2d(x, weight, bias, 1e-6)
    with torch.inference_mode():
        got = channel_layer_norm(x, weight, bias, 1e-6)
    assert _rel(got, want) <= 1e-12
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    # With autograd: the same values, and the gradients of the official formula.
    leaves = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    reference = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
    out = channel_layer_norm(*leaves, 1e-6)
    probe = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    grads = torch.autograd.grad((out * probe).sum(), leaves)
    grads_want = torch.autograd.grad((layer_norm_2d(*reference, 1e-6) * probe).sum(), reference)
    assert _rel(out.detach(), want) <= 1e-12
    for got_grad, want_grad in zip(grads, grads_want):
        assert _rel(got_grad, want_grad) <= 1e-10


def test_layer_norm_2d_module_takes_the_fast_form_unless_set_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    from unilk.layers.norm import LayerNorm2d

    calls = []
    real = unilk_fused.channel_layer_norm

    def counting(*args: object) -> Tensor:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr("unilk.layers.norm.channel_layer_norm", counting)
    norm = LayerNorm2d(6)
    x = torch.randn(2, 6, 5, 5)
    norm.fast_path = False
    plain = norm(x)
    with fused_tail(False):
        norm.fast_path = True
        assert torch.equal(norm(x), plain)
    assert calls == []
    fused = norm(x)  # the default
    assert calls == [1]
    assert _rel(fused, plain) <= 1e-6


def test_unireplknet_fused_stem_runs_channels_last_and_hands_nchw_to_the_stages() -> None:
    from unilk.models import UniRepLKNet

    torch.manual_seed(8)
    model = UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (5,), (3,), (3,))).eval()
    seen = []
    model.downsample_layers[0][0].register_forward_pre_hook(
        lambda _module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        with fused_tail(False):
            reference = model.forward_intermediates(x, intermediates_only=True)
        fused = model.forward_intermediates(x, intermediates_only=True)
    assert seen == [False, True]
    for got, want in zip(fused, reference):
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fused_path_steps_aside_under_autocast() -> None:
    from unilk.models import UniRepLKNet

    with lkconv_mode("auto"), fused_tail():
        assert fused_enabled()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fused_enabled()
    torch.manual_seed(10)
    model = UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (5,), (3,), (3,))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model(x)
        with fused_tail():
            fused = model(x)  # ran into mixed-dtype matmuls before the fused path checked for autocast
    assert torch.equal(fused, reference)


@pytest.mark.parametrize("use_gamma", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
def test_small_map_convnext_tail_takes_the_channels_last_linear(
    monkeypatch: pytest.MonkeyPatch, use_gamma: bool, with_residual: bool
) -> None:
    calls = _count_channels_last_linears(monkeypatch)
    torch.manual_seed(11)
    tail = _ConvNeXtTail(12, 48, use_gamma)
    y = torch.randn(3, 12, 5, 6)  # H*W = 30 <= D = 48
    residual = torch.randn_like(y) if with_residual else None
    with torch.inference_mode():
        want = tail(y, residual)
        got = tail.fused(y.clone(), residual)
    assert calls == [True, False]
    assert got.is_contiguous()
    assert _rel(got, want) <= 1e-5


def test_small_map_tails_fall_back_to_matmul_without_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    # The private oneDNN linear missing (or failing its probe): the same small-map tails run through torch.matmul.
    monkeypatch.setattr(unilk_fused, "onednn_linear", lambda: None)
    torch.manual_seed(12)
    tail, convnext = _Tail(32, use_beta=True, fc2_bias=True), _ConvNeXtTail(12, 48, use_gamma=True)
    y, y2 = torch.randn(3, 32, 7, 6), torch.randn(3, 12, 5, 6)
    with torch.inference_mode():
        assert _rel(tail.fused(y), tail(y)) <= 1e-5
        assert _rel(convnext.fused(y2.clone(), None), convnext(y2, None)) <= 1e-5


def test_workspace_made_under_inference_mode_serves_a_no_grad_forward_later() -> None:
    torch.manual_seed(13)
    release_workspace()
    tail = _Tail(8, use_beta=False, fc2_bias=True)
    y = torch.randn(2, 8, 9, 9)
    with torch.inference_mode():
        first = tail.fused(y)
    with torch.no_grad():
        second = tail.fused(y)  # writes into the buffer made under inference mode
    assert torch.equal(first, second)
    release_workspace()
