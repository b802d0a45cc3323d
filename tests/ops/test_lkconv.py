"""depthwise_conv2d equals nn.Conv2d (forward and every gradient) in every mode, and stays plain when exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import unilk
from unilk.errors import ConfigError
from unilk.layers.fast_path import uses_fast_path
from unilk.ops._fft_conv import fft_depthwise_backward, fft_depthwise_forward, fft_lengths
from unilk.ops._lkconv_plan import Plan, choose_plan
from unilk.ops.lkconv import (
    ENV_VAR,
    MODES,
    correlation_weight_grad,
    current_mode,
    depthwise_conv2d,
    depthwise_conv2d_sum,
    lkconv_mode,
    mode_from_env,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _rel(result: Tensor, reference: Tensor) -> float:
    return ((result - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()


def _reference(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    k_h, k_w = weight.shape[-2:]
    conv = nn.Conv2d(x.shape[1], x.shape[1], (k_h, k_w), padding=(k_h // 2, k_w // 2), groups=x.shape[1],
                     bias=bias is not None).to(x.dtype)  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return F.conv2d(x, weight, bias, padding=conv.padding, groups=conv.groups)


def _check_against_conv2d(mode: str, shape: tuple[int, ...], dtype: torch.dtype, with_bias: bool) -> None:
    n, c, h, w, k_h, k_w = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, dtype=dtype, generator=gen, requires_grad=True)
    weight = torch.randn(c, 1, k_h, k_w, dtype=dtype, generator=gen, requires_grad=True)
    bias = torch.randn(c, dtype=dtype, generator=gen, requires_grad=True) if with_bias else None
    inputs = (x, weight) if bias is None else (x, weight, bias)
    ref = _reference(x, weight, bias)
    grad_out = torch.randn(ref.shape, dtype=dtype, generator=gen)
    ref_grads = torch.autograd.grad(ref, inputs, grad_out)
    with lkconv_mode(mode):
        out = depthwise_conv2d(x, weight, bias)
    grads = torch.autograd.grad(out, inputs, grad_out)
    assert out.shape == ref.shape
    assert _rel(out, ref) <= TOL[dtype]
    for name, got, want in zip(("x", "weight", "bias"), grads, ref_grads):
        assert got.shape == want.shape, name
        assert _rel(got, want) <= TOL[dtype], name


SHAPES = [
    (2, 3, 9, 9, 13, 13),  # kernel larger than the map but every tap reaches it (13 <= 2*9-1): no cropping
    (2, 3, 7, 7, 31, 31),  # cropped to 13x13
    (1, 4, 5, 11, 51, 5),  # rectangular kernel on a non-square map, height cropped to 9
    (2, 2, 12, 6, 5, 51),  # wide kernel (channels-last rule), width cropped to 11
    (3, 2, 16, 14, 17, 15),  # odd non-square sizes, no cropping
    (1, 3, 1, 1, 3, 3),  # a single pixel
    (2, 5, 20, 20, 3, 3),
]


# The triton mode needs CUDA or Triton's interpreter: tests/ops/test_triton_lkconv.py checks it.
@pytest.mark.parametrize("mode", [m for m in MODES if m != "triton"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_mode_matches_conv2d_float32(mode: str, shape: tuple[int, ...]) -> None:
    _check_against_conv2d(mode, shape, torch.float32, with_bias=True)


@pytest.mark.parametrize("mode", ["auto", "channels_last", "fft", "nchw"])
@pytest.mark.parametrize("shape", SHAPES[:4], ids=lambda s: "x".join(map(str, s)))
def test_float64_without_bias(mode: str, shape: tuple[int, ...]) -> None:
    _check_against_conv2d(mode, shape, torch.float64, with_bias=False)


@pytest.mark.parametrize("shape", [(2, 8, 20, 20, 31, 31), (1, 8, 30, 26, 51, 5), (2, 4, 14, 14, 47, 47)])
def test_model_like_shapes_auto(shape: tuple[int, ...]) -> None:
    _check_against_conv2d("auto", shape, torch.float32, with_bias=False)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    k_h=st.integers(0, 12).map(lambda k: 2 * k + 1),
    k_w=st.integers(0, 12).map(lambda k: 2 * k + 1),
    mode=st.sampled_from(["auto", "fft", "channels_last"]),
)
def test_random_shapes(n: int, c: int, h: int, w: int, k_h: int, k_w: int, mode: str) -> None:
    _check_against_conv2d(mode, (n, c, h, w, k_h, k_w), torch.float64, with_bias=True)


def test_gradcheck_of_custom_backward() -> None:
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 1, 7, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(1, dtype=torch.float64, requires_grad=True)
    for mode in ("fft", "channels_last", "nchw"):
        with lkconv_mode(mode):
            assert torch.autograd.gradcheck(depthwise_conv2d, (x, weight, bias))


def test_partial_requires_grad() -> None:
    x = torch.randn(2, 4, 16, 16)
    weight = torch.randn(4, 1, 31, 31, requires_grad=True)
    out = depthwise_conv2d(x, weight)
    (grad_w,) = torch.autograd.grad(out.sum(), weight)
    ref = F.conv2d(x, weight, padding=15, groups=4)
    (ref_w,) = torch.autograd.grad(ref.sum(), weight)
    assert _rel(grad_w, ref_w) <= 1e-5
    x.requires_grad_()
    frozen = weight.detach()
    (grad_x,) = torch.autograd.grad(depthwise_conv2d(x, frozen).sum(), x)
    (ref_x,) = torch.autograd.grad(F.conv2d(x, frozen, padding=15, groups=4).sum(), x)
    assert _rel(grad_x, ref_x) <= 1e-5


def test_cropped_taps_get_zero_gradient() -> None:
    x = torch.randn(1, 2, 4, 4)
    weight = torch.randn(2, 1, 15, 15, requires_grad=True)
    (grad_w,) = torch.autograd.grad(depthwise_conv2d(x, weight).sum(), weight)
    # On a 4x4 map only the central 7x7 taps can touch the input.
    inner = torch.zeros_like(grad_w, dtype=torch.bool)
    inner[..., 4:11, 4:11] = True
    assert grad_w[~inner].abs().max() == 0
    assert grad_w[inner].abs().min() > 0


def test_plain_mode_is_bitwise_conv2d() -> None:
    x, weight, bias = torch.randn(2, 8, 20, 20), torch.randn(8, 1, 31, 31), torch.randn(8)
    want = F.conv2d(x, weight, bias, padding=15, groups=8)
    assert torch.equal(depthwise_conv2d(x, weight, bias, mode="plain"), want)
    with lkconv_mode("plain"):
        assert torch.equal(depthwise_conv2d(x, weight, bias), want)


def test_mode_sources_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    # A call runs in its caller's mode unless a lkconv_mode block overrides it; the environment is not read per call.
    monkeypatch.setenv(ENV_VAR, "fastest")
    assert current_mode() == "auto"
    assert current_mode("fft") == "fft"
    with lkconv_mode("plain"):
        assert current_mode("fft") == "plain"
        with lkconv_mode("nchw"):
            assert current_mode() == "nchw"
        assert current_mode() == "plain"
    assert current_mode("fft") == "fft"
    with pytest.raises(ConfigError, match=r"'fastest'.*'channels_last'"):
        depthwise_conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3), mode="fastest")
    with pytest.raises(ConfigError, match="'bogus'"), lkconv_mode("bogus"):
        pass


def test_env_mode_is_read_when_a_model_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, " FFT ")
    assert mode_from_env() == "fft"
    model = unilk.create_model("test_slak", num_classes=3).eval()
    convs = [m for m in model.modules() if hasattr(m, "lkconv_mode")]
    assert convs
    assert {m.lkconv_mode for m in convs} == {"fft"}
    # A later change of the variable does not reach the built model, even a bad value: nothing fails mid-forward.
    monkeypatch.setenv(ENV_VAR, "fastest")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fft_out = model(x)
        model.set_lkconv_mode("plain")
        assert torch.allclose(model(x), fft_out, rtol=1e-5, atol=1e-5)
    model.set_fast_path(False)
    unilk.reparameterize(model)  # the deploy convs follow the model's choices
    assert {m.lkconv_mode for m in model.modules() if hasattr(m, "lkconv_mode")} == {"plain"}
    assert not uses_fast_path(model)
    with pytest.raises(ConfigError, match=r"UNILK_LKCONV.*'fastest'.*'channels_last'"):
        unilk.create_model("test_slak")
    with pytest.raises(ConfigError, match="'bogus'"):
        model.set_lkconv_mode("bogus")


def test_channels_last_input_keeps_its_format() -> None:
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 1, 21, 21)
    for mode in ("auto", "channels_last", "nchw", "fft"):
        with lkconv_mode(mode):
            out = depthwise_conv2d(x, weight)
        assert _rel(out, F.conv2d(x, weight, padding=10, groups=8)) <= 1e-5
    with lkconv_mode("channels_last"):
        assert depthwise_conv2d(x, weight).is_contiguous(memory_format=torch.channels_last)
        assert depthwise_conv2d(x.contiguous(), weight).is_contiguous()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_uses_cropped_plain_conv(dtype: torch.dtype) -> None:
    x, weight = torch.randn(1, 4, 6, 6, dtype=dtype), torch.randn(4, 1, 31, 31, dtype=dtype)
    ref = F.conv2d(x.double(), weight.double(), padding=15, groups=4)
    assert _rel(depthwise_conv2d(x, weight).double(), ref) <= 2e-2


def test_unsupported_shapes_behave_like_conv2d() -> None:
    # An even kernel is not "same"; the function keeps F.conv2d's semantics rather than inventing some.
    x, weight = torch.randn(1, 3, 8, 8), torch.randn(3, 1, 4, 4)
    assert torch.equal(depthwise_conv2d(x, weight), F.conv2d(x, weight, padding=2, groups=3))


def test_auto_rules_pick_the_measured_algorithms() -> None:
    assert choose_plan("auto", 8, 128, 56, 56, 31, 31) == Plan("channels_last", "channels_last", "fft")
    assert choose_plan("auto", 8, 128, 56, 56, 13, 13) == Plan("nchw", "nchw", "corr")
    assert choose_plan("auto", 8, 124, 56, 56, 51, 5).forward == "nchw"
    assert choose_plan("auto", 8, 124, 56, 56, 5, 51).forward == "channels_last"
    assert choose_plan("auto", 1, 8, 64, 64, 51, 51).forward == "fft"
    # weight gradient: FFT only for the widest dense kernels on large maps, the grouped correlation elsewhere
    assert choose_plan("auto", 8, 256, 28, 28, 29, 29).weight_grad == "fft"
    assert choose_plan("auto", 8, 512, 14, 14, 27, 27).weight_grad == "corr"
    assert choose_plan("auto", 8, 768, 7, 7, 13, 13).weight_grad == "corr"
    assert choose_plan("auto", 32, 124, 56, 56, 5, 51).weight_grad == "corr"
    assert choose_plan("auto", 1, 499, 14, 14, 5, 5).weight_grad == "corr"
    with pytest.raises(ConfigError, match="'crop'"):
        choose_plan("crop", 1, 1, 4, 4, 3, 3)


def test_fft_helpers_directly() -> None:
    assert fft_lengths(56, 56, 31, 31) == (72, 72)  # 56 + 15 = 71 -> 72 = 2^3 * 3^2
    x, weight = torch.randn(2, 3, 10, 7, dtype=torch.float64), torch.randn(3, 1, 9, 13, dtype=torch.float64)
    ref = F.conv2d(x, weight, padding=(4, 6), groups=3)
    assert _rel(fft_depthwise_forward(x, weight), ref) <= 1e-12
    grad_x, grad_w = fft_depthwise_backward(x, weight, torch.ones_like(ref), need_input=False, need_weight=True)
    assert grad_x is None
    x_ = x.clone().requires_grad_()
    w_ = weight.clone().requires_grad_()
    ref_x, ref_w = torch.autograd.grad(F.conv2d(x_, w_, padding=(4, 6), groups=3).sum(), (x_, w_))
    assert _rel(grad_w, ref_w) <= 1e-12
    grad_x, grad_w = fft_depthwise_backward(x, weight, torch.ones_like(ref), need_input=True, need_weight=False)
    assert grad_w is None
    assert _rel(grad_x, ref_x) <= 1e-12


class _TinyLK(nn.Module):
    """A module that calls depthwise_conv2d the way the trunks do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 31, padding=15, groups=4)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.conv.weight, self.conv.bias)


def test_jit_trace_records_a_plain_convolution() -> None:
    model, x = _TinyLK().eval(), torch.randn(1, 4, 16, 16)
    traced = torch.jit.trace(model, x)
    graph = str(traced.graph)
    assert "aten::_convolution" in graph
    assert "PythonOp" not in graph
    assert torch.allclose(traced(x), model(x), atol=1e-5)


def test_torch_export_records_a_plain_convolution() -> None:
    model, x = _TinyLK().eval(), torch.randn(1, 4, 16, 16)
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert any("conv" in t for t in targets), targets
    assert not any("fft" in t for t in targets), targets
    assert torch.allclose(exported.module()(x), model(x), atol=1e-5)


def test_onnx_export_runs_in_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime

    model, x = _TinyLK().eval(), torch.randn(1, 4, 16, 16)
    path = tmp_path / "lk.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert _rel(torch.from_numpy(out), model(x).detach()) <= 1e-5


@pytest.mark.parametrize("shape", [(1, 16, 7, 7, 13, 13), (2, 8, 14, 14, 13, 5), (3, 4, 9, 11, 5, 3)])
def test_nchw_forward_without_grad_is_bitwise_conv2d(shape: tuple[int, ...]) -> None:
    # The auto route calls oneDNN's NCHW kernel directly for these shapes: it must be the very kernel F.conv2d runs.
    n, c, h, w, k_h, k_w = shape
    x, weight, bias = torch.randn(n, c, h, w), torch.randn(c, 1, k_h, k_w), torch.randn(c)
    expected = F.conv2d(x, weight, bias, padding=(k_h // 2, k_w // 2), groups=c)
    with torch.no_grad(), lkconv_mode("auto"):
        assert torch.equal(depthwise_conv2d(x, weight, bias), expected)
        assert torch.equal(depthwise_conv2d(x, weight, bias), expected)  # second call: the cached route


def test_routes_are_decided_once_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from unilk.ops import lkconv

    monkeypatch.setattr(lkconv, "_ROUTES", {})
    monkeypatch.setattr(lkconv, "_MAX_ROUTES", 3)
    weight = torch.randn(4, 1, 9, 9)
    with lkconv_mode("auto"):
        for size in range(5, 12):
            x = torch.randn(1, 4, size, size)
            assert _rel(depthwise_conv2d(x, weight), F.conv2d(x, weight, padding=4, groups=4)) <= 1e-6
            assert len(lkconv._ROUTES) <= 3
        route = lkconv._ROUTES[("auto", x.shape, weight.shape, x.dtype, weight.dtype, True)]
    assert route.crop is None
    assert route.plan == Plan("nchw", "nchw", "corr")


def test_training_uses_native_autograd_where_every_direction_is_native() -> None:
    weight = torch.randn(8, 1, 13, 13, requires_grad=True)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    with lkconv_mode("nchw"):  # every direction PyTorch's own: F.conv2d and its autograd
        assert type(depthwise_conv2d(x, weight).grad_fn).__name__ == "ConvolutionBackward0"
    with lkconv_mode("auto"):  # the correlation weight gradient: the custom function
        assert "DepthwiseConvFn" in type(depthwise_conv2d(x, weight).grad_fn).__name__


@pytest.mark.parametrize("mode", ["auto", "plain"])
def test_depthwise_conv2d_sum_is_the_sum_of_the_convolutions(mode: str) -> None:
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 6, 12, 10, dtype=torch.float64, generator=gen)
    tall, wide = torch.randn(6, 1, 15, 3, dtype=torch.float64), torch.randn(6, 1, 3, 15, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    want = _reference(x, tall, bias) + _reference(x, wide, None)
    with lkconv_mode(mode):
        with torch.no_grad():
            assert _rel(depthwise_conv2d_sum(x, (tall, wide), bias), want) <= 1e-12
        leaves = [t.clone().requires_grad_(True) for t in (x, tall, wide, bias)]
        out = depthwise_conv2d_sum(leaves[0], leaves[1:3], leaves[3])
        grads = torch.autograd.grad(out.square().sum(), leaves)
    reference = [t.clone().requires_grad_(True) for t in (x, tall, wide, bias)]
    summed = _reference(reference[0], reference[1], reference[3]) + _reference(reference[0], reference[2], None)
    grads_want = torch.autograd.grad(summed.square().sum(), reference)
    assert _rel(out.detach(), want) <= 1e-12
    for got, expected in zip(grads, grads_want):
        assert _rel(got, expected) <= 1e-10
    with pytest.raises(ValueError, match="weights is empty"):
        depthwise_conv2d_sum(x, ())


def test_auto_rules_stay_on_cpu_and_forced_modes_run_on_other_devices() -> None:
    # The meta device stands in for CUDA: no data, but the same routing and the same PyTorch ops.
    from unilk.ops import lkconv

    weight = torch.empty(4, 1, 31, 31, device="meta")
    x = torch.empty(2, 4, 10, 10, device="meta")  # 31 taps on 10 pixels: cropped to 19
    auto = lkconv._make_route(("test-auto",), "auto", x, weight)
    assert auto.plan is None  # measured on CPU only: just the exact crop elsewhere
    assert auto.crop is not None
    forced = lkconv._make_route(("test-forced",), "nchw", x, weight)
    assert forced.plan == Plan("nchw", "nchw", "nchw")
    assert not forced.onednn  # oneDNN's convolution is CPU only
    with lkconv_mode("channels_last"):
        out = depthwise_conv2d(x, weight)
    assert out.shape == x.shape
    assert out.device.type == "meta"


@pytest.mark.parametrize(
    ("shape", "dilation"),
    [((2, 3, 9, 11, 5, 7), 1), ((1, 4, 14, 14, 13, 13), 1), ((3, 2, 12, 10, 3, 5), 3), ((2, 3, 7, 7, 7, 7), 2)],
)
def test_correlation_weight_grad_equals_pytorchs_in_float64(shape: tuple[int, ...], dilation: int) -> None:
    n, c, h, w, k_h, k_w = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    grad_out = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    weight = torch.zeros(c, 1, k_h, k_w, dtype=torch.float64)
    padding = [dilation * (k_h // 2), dilation * (k_w // 2)]
    want = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, [1, 1], padding, [dilation, dilation], False, [0, 0], c, [False, True, False]
    )[1]
    got = correlation_weight_grad(x, grad_out, k_h, k_w, dilation)
    assert got.shape == want.shape
    assert _rel(got, want) <= 1e-12
    channels_last = correlation_weight_grad(
        x.contiguous(memory_format=torch.channels_last), grad_out.contiguous(memory_format=torch.channels_last),
        k_h, k_w, dilation,
    )  # fmt: skip
    assert _rel(channels_last, want) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dilated_convolution_equals_conv2d_in_every_direction(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 11, 9, dtype=dtype, generator=gen, requires_grad=True)
    weight = torch.randn(4, 1, 3, 5, dtype=dtype, generator=gen, requires_grad=True)
    bias = torch.randn(4, dtype=dtype, generator=gen, requires_grad=True)
    ref = F.conv2d(x, weight, bias, padding=(3, 6), dilation=3, groups=4)
    grad_out = torch.randn(ref.shape, dtype=dtype, generator=gen)
    want = torch.autograd.grad(ref, (x, weight, bias), grad_out)
    out = depthwise_conv2d(x, weight, bias, dilation=3)
    assert "DilatedDepthwiseFn" in type(out.grad_fn).__name__
    got = torch.autograd.grad(out, (x, weight, bias), grad_out)
    assert _rel(out, ref) <= TOL[dtype]
    for name, g, w in zip(("x", "weight", "bias"), got, want):
        assert _rel(g, w) <= TOL[dtype], name
    plain = depthwise_conv2d(x, weight, bias, mode="plain", dilation=3)
    assert type(plain.grad_fn).__name__ == "ConvolutionBackward0"
    assert torch.equal(plain, ref)
    if dtype == torch.float64:
        small = (x[:1, :2, :6, :5].detach(), weight[:2].detach(), bias[:2].detach())
        small = tuple(t.requires_grad_() for t in small)
        assert torch.autograd.gradcheck(lambda *t: depthwise_conv2d(*t, dilation=2), small)


def test_dilated_branches_of_a_training_drb_match_the_plain_build() -> None:
    from unilk.layers.dilated_reparam import DilatedReparamBlock
    from unilk.layers.fast_path import set_fast_path

    block = DilatedReparamBlock(6, 13).double().train()
    x = torch.randn(2, 6, 15, 15, dtype=torch.float64, requires_grad=True)
    grads = {}
    for fast in (True, False):
        set_fast_path(block, fast)
        block.zero_grad()
        out = block(x)
        (grad_x,) = torch.autograd.grad(out.square().sum(), x, retain_graph=True)
        out.square().sum().backward()
        grads[fast] = (out.detach(), grad_x, [p.grad.clone() for p in block.parameters()])
    (out_f, gx_f, gp_f), (out_p, gx_p, gp_p) = grads[True], grads[False]
    assert _rel(out_f, out_p) <= 1e-12
    assert _rel(gx_f, gx_p) <= 1e-12
    for fast_grad, plain_grad in zip(gp_f, gp_p):
        assert _rel(fast_grad, plain_grad) <= 1e-12
