"""The cached autotuner behind ``auto`` on CUDA, with stand-in candidates and timers, and the autocast cast."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from unilk.ops import lkconv
from unilk.ops._lkconv_plan import Plan
from unilk.ops._lkconv_tune import Tuner, synchronized_timer, tolerance
from unilk.ops.lkconv import TUNED, depthwise_conv2d, lkconv_mode


def _stand_ins(values: dict[str, Tensor], calls: Counter) -> dict[str, object]:
    def make(name: str) -> object:
        def run() -> Tensor:
            calls[name] += 1
            return values[name]

        return run

    return {name: make(name) for name in values}


def _fake_timer(seconds: dict[str, float]) -> object:
    def timer(name: str, fn: object) -> float:
        fn()
        return seconds[name]

    return timer


def test_picks_the_fastest_once_per_key_and_caches_it() -> None:
    calls: Counter = Counter()
    same = torch.ones(3)
    candidates = _stand_ins({"nchw": same, "channels_last": same, "triton": same}, calls)
    tuner = Tuner(timer=_fake_timer({"nchw": 3.0, "channels_last": 2.0, "triton": 1.0}))
    assert tuner.cached("k") is None
    assert tuner.choose("k", candidates, 1e-6) == "triton"
    first = dict(calls)
    assert tuner.choose("k", candidates, 1e-6) == "triton"
    assert dict(calls) == first  # answered from the cache: nothing ran again
    assert tuner.cached("k") == "triton"
    slow_triton = Tuner(timer=_fake_timer({"nchw": 3.0, "channels_last": 2.0, "triton": 5.0}))
    assert slow_triton.choose("k", candidates, 1e-6) == "channels_last"


def test_wrong_or_failing_candidates_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    calls: Counter = Counter()
    candidates = _stand_ins({"nchw": torch.ones(4), "fft": torch.ones(4) * 1.5, "triton": torch.ones(4)}, calls)

    def broken() -> Tensor:
        raise RuntimeError("no kernel for this shape")

    candidates["channels_last"] = broken
    tuner = Tuner(timer=_fake_timer({"nchw": 3.0, "fft": 0.1, "channels_last": 0.1, "triton": 2.0}))
    with caplog.at_level(logging.WARNING, logger="unilk.ops._lkconv_tune"):
        assert tuner.choose(("conv", 1), candidates, 1e-3) == "triton"
    assert "fft differs from nchw by 5.00e-01" in caplog.text
    assert "channels_last failed" in caplog.text


def test_reference_failure_and_no_candidates_raise() -> None:
    tuner = Tuner(timer=_fake_timer({}))

    def broken() -> Tensor:
        raise RuntimeError("reference broke")

    with pytest.raises(RuntimeError, match="reference broke"):
        tuner.choose("k", {"nchw": broken}, 1e-6)
    with pytest.raises(ValueError, match="no candidates"):
        tuner.choose("k", {}, 1e-6)


def test_cache_is_bounded() -> None:
    tuner = Tuner(timer=_fake_timer({"a": 1.0}), max_entries=2)
    for key in range(5):
        tuner.choose(key, {"a": lambda: torch.zeros(1)}, 0.0)
    assert sum(tuner.cached(key) is not None for key in range(5)) <= 2


def test_tolerance_per_dtype() -> None:
    assert tolerance(torch.float64) < tolerance(torch.float32) < tolerance(torch.float32, tf32=True)
    assert tolerance(torch.float32, tf32=True) < tolerance(torch.bfloat16)
    with pytest.raises(ValueError, match="floating-point"):
        tolerance(torch.int32)


def test_tuned_plan_runs_real_candidates_per_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    # What auto does on CUDA, run on CPU with the CPU's candidates and a timer that prefers FFT.
    tuner = Tuner(timer=_fake_timer({"nchw": 2.0, "channels_last": 3.0, "fft": 1.0, "corr": 1.5}))
    monkeypatch.setattr(lkconv, "_TUNER", tuner)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(3, 1, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    grad_out = torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=gen)
    out = lkconv._DepthwiseConvFn.apply(x, weight, bias, Plan(TUNED, TUNED, TUNED))
    grads = torch.autograd.grad(out, (x, weight, bias), grad_out)
    ref = F.conv2d(x, weight, bias, padding=(3, 2), groups=3)
    ref_grads = torch.autograd.grad(ref, (x, weight, bias), grad_out)
    assert torch.allclose(out, ref, atol=1e-12)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-11)
    shape, kernel = x.shape, weight.shape
    assert tuner.cached(("conv", shape, kernel, torch.float64, False, x.device)) == "fft"
    assert tuner.cached(("weight_grad", shape, kernel, torch.float64, False, False, x.device)) == "fft"


def test_autocast_casts_like_conv2d() -> None:
    x, weight, bias = torch.randn(2, 4, 9, 9), torch.randn(4, 1, 13, 13, requires_grad=True), torch.randn(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.conv2d(x, weight, bias, padding=6, groups=4)
        with lkconv_mode("auto"):
            out = depthwise_conv2d(x, weight, bias)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert torch.equal(out, expected)  # the same bfloat16 convolution
    (grad,) = torch.autograd.grad(out.float().sum(), weight)
    assert grad.dtype == torch.float32  # the float32 master weight still gets its gradient


def test_synchronized_timer_times_slow_candidates_once() -> None:
    calls: Counter = Counter()

    def fast() -> None:
        calls["fast"] += 1

    def slow() -> None:
        calls["slow"] += 1
        time.sleep(0.02)

    # Thresholds far from the calls' durations, so a loaded machine cannot flip them.
    assert synchronized_timer(rounds=2, calls=3, slow_s=1.0)("fast", fast) < 1.0
    assert calls["fast"] == 1 + 2 * 3
    assert synchronized_timer(rounds=2, calls=3, slow_s=0.01)("slow", slow) >= 0.02
    assert calls["slow"] == 1


def test_tuned_choice_keeps_the_channels_last_format(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyTorch's NCHW kernel wins here; its result still comes back channels-last, like the input.
    timer = _fake_timer({"nchw": 1.0, "channels_last": 2.0, "fft": 3.0, "corr": 4.0})
    monkeypatch.setattr(lkconv, "_TUNER", Tuner(timer=timer))
    x = torch.randn(2, 4, 7, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(4, 1, 5, 5, requires_grad=True)
    out = lkconv._DepthwiseConvFn.apply(x, weight, None, Plan(TUNED, TUNED, TUNED))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, F.conv2d(x, weight, padding=2, groups=4), atol=1e-5)
    grad_out = torch.randn_like(out).contiguous(memory_format=torch.channels_last)
    (grad_x,) = torch.autograd.grad(out, x, grad_out)
    assert grad_x.is_contiguous(memory_format=torch.channels_last)
