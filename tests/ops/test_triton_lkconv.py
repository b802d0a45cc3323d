"""The Triton large-kernel kernels equal F.conv2d (values and every gradient), run here by Triton's CPU interpreter.

``TRITON_INTERPRET=1`` is set per test; the module decorates its kernels on first use under the current setting, so
the interpreter is picked up without a subprocess. Shapes are tiny: the interpreter runs each program in Python.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import unilk.ops
from unilk.errors import ConfigError
from unilk.ops.lkconv import depthwise_conv2d, depthwise_conv2d_sum, lkconv_mode

pytest.importorskip("triton")

from unilk.ops import triton_lkconv  # only after the skip: Triton is optional

# Largest error relative to the float64 reference's largest value, per input dtype.
TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


@pytest.fixture(autouse=True)
def _interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(triton_lkconv.INTERPRET_ENV_VAR, "1")


def _rel(result: Tensor, reference: Tensor) -> float:
    result, reference = result.double(), reference.double()
    return ((result - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()


def _reference(x: Tensor, weights: list[Tensor], bias: Tensor | None) -> Tensor:
    """The sum of ``nn.Conv2d``-style same convolutions in float64."""
    out = sum(F.conv2d(x, w, padding=(w.shape[-2] // 2, w.shape[-1] // 2), groups=x.shape[1]) for w in weights)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _layout(x: Tensor, layout: str) -> Tensor:
    if layout == "nchw":
        return x
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a view with gaps: every other row of a taller map, columns reversed via a copy-free slice
        n, c, h, w = x.shape
        tall = torch.zeros(n, c, 2 * h, w + 1, dtype=x.dtype)
        tall[:, :, ::2, 1:] = x
        view = tall[:, :, ::2, 1:]
        assert not view.is_contiguous()
        return view
    raise ValueError(f"unknown layout {layout!r}")


def _check(
    shape: tuple[int, int, int, int],
    kernels: list[tuple[int, int]],
    dtype: torch.dtype = torch.float64,
    layout: str = "nchw",
    with_bias: bool = True,
    call: Callable[[Tensor, list[Tensor], Tensor | None], Tensor] = triton_lkconv.depthwise_conv2d_triton,
) -> None:
    """Forward and the gradients of x, every kernel and the bias against float64 F.conv2d on the same rounded values."""
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(n * 1000 + c * 100 + h * 10 + w)
    x64 = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen).to(dtype).double()
    w64 = [torch.randn(c, 1, kh, kw, dtype=torch.float64, generator=gen).to(dtype).double() for kh, kw in kernels]
    b64 = torch.randn(c, dtype=torch.float64, generator=gen).to(dtype).double() if with_bias else None
    g64 = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen).to(dtype).double()

    leaves64 = [t.clone().requires_grad_() for t in [x64, *w64, *([b64] if with_bias else [])]]
    ref = _reference(leaves64[0], leaves64[1 : 1 + len(kernels)], leaves64[-1] if with_bias else None)
    ref_grads = torch.autograd.grad(ref, leaves64, g64)

    leaves = [t.to(dtype).requires_grad_() for t in [x64, *w64, *([b64] if with_bias else [])]]
    x = _layout(leaves[0], layout)
    out = call(x, leaves[1 : 1 + len(kernels)], leaves[-1] if with_bias else None)
    assert out.dtype == dtype
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    grads = torch.autograd.grad(out, leaves, _layout(g64.to(dtype), layout))
    assert _rel(out, ref) <= TOL[dtype]
    names = ["x", *[f"weight{i}" for i in range(len(kernels))], *(["bias"] if with_bias else [])]
    for name, got, want in zip(names, grads, ref_grads, strict=True):
        assert got.shape == want.shape, name
        assert got.dtype == dtype, name
        assert _rel(got, want) <= TOL[dtype], name


@pytest.mark.parametrize(
    ("shape", "kernels", "layout"),
    [
        ((1, 2, 5, 5), [(7, 7)], "nchw"),  # kernel larger than the map
        ((1, 2, 3, 4), [(7, 9)], "nchw"),  # taps beyond 2*size-1 only see padding (no crop in the kernels)
        ((1, 4, 5, 7), [(9, 3)], "channels_last"),  # batch 1, odd sizes, a tall rectangle, channel blocks
        ((2, 2, 4, 6), [(3, 5)], "strided"),  # a non-contiguous view
        ((2, 2, 5, 4), [(7, 3), (3, 7)], "nchw"),  # SLaK's two rectangles summed in one pass
        ((1, 5, 5, 6), [(7, 3), (3, 7)], "channels_last"),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_float64_values_and_gradients(
    shape: tuple[int, int, int, int], kernels: list[tuple[int, int]], layout: str
) -> None:
    _check(shape, kernels, torch.float64, layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_lower_precisions_accumulate_in_float32(dtype: torch.dtype, layout: str) -> None:
    # Rounded inputs against float64 on the same values: only the output rounding remains.
    _check((1, 3, 4, 5), [(5, 3), (3, 5)], dtype, layout, with_bias=dtype != torch.float16)


def test_broadcast_gradient_and_no_bias() -> None:
    # out.sum() hands backward an expanded (stride 0) gradient; the kernels read it through its strides.
    x = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 1, 5, 3, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(triton_lkconv.depthwise_conv2d_triton(x, [weight]).sum(), (x, weight))
    ref = torch.autograd.grad(F.conv2d(x, weight, padding=(2, 1), groups=2).sum(), (x, weight))
    for got, want in zip(grads, ref):
        assert _rel(got, want) <= 1e-12


def test_lkconv_triton_mode_crops_and_matches_conv2d() -> None:
    def call(x: Tensor, weights: list[Tensor], bias: Tensor | None) -> Tensor:
        with lkconv_mode("triton"):
            return depthwise_conv2d(x, weights[0], bias)

    # 31x31 on a 3x4 map: cropped to 5x7 before the kernels run; the cropped taps get zero gradient.
    _check((1, 2, 3, 4), [(31, 31)], torch.float64, "nchw", call=call)
    _check((1, 3, 4, 4), [(5, 5)], torch.float32, "channels_last", call=call)


def test_lkconv_triton_mode_sum_is_one_pass() -> None:
    calls = []

    def call(x: Tensor, weights: list[Tensor], bias: Tensor | None) -> Tensor:
        with lkconv_mode("triton"):
            return depthwise_conv2d_sum(x, weights, bias)

    original = triton_lkconv.conv_forward

    def counting(*args: object, **kwargs: object) -> Tensor:
        calls.append(len(args[1]))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(triton_lkconv, "conv_forward", counting)
        _check((1, 2, 4, 5), [(15, 3), (3, 15)], torch.float64, "nchw", call=call)  # cropped to 7x3 and 3x9
    assert calls == [2, 2]  # forward and input gradient: both kernels in one launch each


def test_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    x, weight = torch.randn(1, 2, 4, 4), torch.randn(2, 1, 3, 3)
    monkeypatch.delenv(triton_lkconv.INTERPRET_ENV_VAR)
    with pytest.raises(ConfigError, match=r"CUDA device.*TRITON_INTERPRET=1"), lkconv_mode("triton"):
        depthwise_conv2d(x, weight)
    monkeypatch.setenv(triton_lkconv.INTERPRET_ENV_VAR, "1")
    with pytest.raises(ConfigError, match=r"expected \(2, 1, k_h, k_w\) with odd"):
        triton_lkconv.depthwise_conv2d_triton(x, [torch.randn(2, 1, 4, 3)])
    with pytest.raises(ConfigError, match=r"dtype torch\.int64"):
        triton_lkconv.depthwise_conv2d_triton(x.long(), [weight.long()])
    with pytest.raises(ConfigError, match="must match"):
        triton_lkconv.depthwise_conv2d_triton(x, [weight.double()])
    # What a missing Triton looks like to the lazy import.
    monkeypatch.setitem(sys.modules, "unilk.ops.triton_lkconv", None)
    monkeypatch.delattr(unilk.ops, "triton_lkconv")
    with pytest.raises(ConfigError, match="needs the triton package"), lkconv_mode("triton"):
        depthwise_conv2d(torch.randn(1, 2, 5, 5), weight)  # a new shape: the route is decided again


def test_triton_mode_under_autocast_runs_in_the_autocast_dtype() -> None:
    x = torch.randn(1, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 1, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.conv2d(x, weight, padding=2, groups=4)
        with lkconv_mode("triton"):
            out = depthwise_conv2d(x, weight)
    assert out.dtype == torch.bfloat16
    assert _rel(out, expected) <= 1e-2
    (grad,) = torch.autograd.grad(out.float().sum(), weight)
    (want,) = torch.autograd.grad(expected.float().sum(), weight)
    assert grad.dtype == torch.float32
    assert _rel(grad, want) <= 2e-2


@pytest.mark.parametrize(("fastest", "expected"), [("triton", "triton"), ("separate", "separate")])
def test_auto_weighs_the_one_pass_sum_against_separate_convolutions(
    monkeypatch: pytest.MonkeyPatch, fastest: str, expected: str
) -> None:
    from unilk.ops import lkconv
    from unilk.ops._lkconv_tune import Tuner

    seconds = {"separate": 2.0, "triton": 2.0, "nchw": 1.0, "channels_last": 2.0, "fft": 3.0, fastest: 0.5}
    monkeypatch.setattr(lkconv, "_TUNER", Tuner(timer=lambda name, fn: seconds[name]))
    x = torch.randn(1, 3, 5, 6).contiguous(memory_format=torch.channels_last)
    weights = [torch.randn(3, 1, 9, 3), torch.randn(3, 1, 3, 9)]
    # The one-pass candidate is kept only if it agrees with the separate convolutions, so "triton" also checks values.
    assert lkconv._tuned_sum(x, weights) == expected
