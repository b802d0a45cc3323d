"""Large-kernel depthwise convolution: one entry point for every large-kernel layer of the three trunks.

``depthwise_conv2d`` computes exactly what ``nn.Conv2d(C, C, (k_h, k_w), padding=(k_h // 2, k_w // 2), groups=C)``
computes (stride 1, "same" padding per axis). Layers keep plain ``nn.Conv2d`` modules (so checkpoints, export and
``state_dict`` keys are unchanged) and call this function in ``forward`` with the module's weight and bias.

PyTorch's CPU depthwise convolution swings by 10-80x with memory layout and kernel size, and its weight gradient is
slow in every layout. This module therefore picks, per direction (forward, input gradient, weight gradient), among exact
algorithms (see :mod:`unilk.ops._lkconv_plan`):

- ``crop``: taps farther than ``size - 1`` from the centre only ever multiply padding, so a kernel side larger than
  ``2 * size - 1`` is cropped first (always applied outside the ``plain`` mode; the cropped taps get zero gradient).
- ``nchw`` / ``channels_last``: PyTorch's direct convolution in either memory layout.
- ``fft``: FFT convolution with the short circular length ``size + k // 2`` (:mod:`unilk.ops._fft_conv`).
- ``triton``: Triton kernels for every direction (:mod:`unilk.ops.triton_lkconv`; CUDA, or CPU under
  ``TRITON_INTERPRET=1``); :func:`depthwise_conv2d_sum` then adds SLaK's two rectangles in one pass.

The mode is the caller's ``mode`` argument (layers pass the one their model was built with: ``$UNILK_LKCONV``, read
by :func:`mode_from_env` when the model is built, ``auto`` when unset; ``plain`` is exactly ``F.conv2d``, the reference
build), unless a :func:`lkconv_mode` block overrides it. ``auto``'s rules were measured on CPU;
on CUDA ``auto`` autotunes instead: the first call of each shape, dtype and layout times the exact candidates
(``nchw``, cuDNN through ``channels_last``, ``fft`` for float32/float64, ``triton`` when installed) per direction and
keeps the fastest (:mod:`unilk.ops._lkconv_tune`). On other devices ``auto`` applies only the crop, while a forced
mode runs as asked. Under ``torch.autocast`` the op first casts to the autocast dtype, as ``F.conv2d`` would. While
tracing or exporting
(``torch.compile``/``torch.export``, ``torch.jit.trace``, ONNX export) the op is always plain ``F.conv2d``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from unilk.errors import ConfigError
from unilk.ops._fft_conv import fft_depthwise_backward, fft_depthwise_forward
from unilk.ops._lkconv_plan import NCHW_MAX_WIDTH, Plan, choose_plan
from unilk.ops._lkconv_tune import Tuner, tolerance
from unilk.ops.tracing import plain_required

__all__ = [
    "depthwise_conv2d",
    "depthwise_conv2d_sum",
    "lkconv_mode",
    "current_mode",
    "mode_from_env",
    "MODES",
    "ENV_VAR",
]

logger = logging.getLogger(__name__)

ENV_VAR = "UNILK_LKCONV"
MODES = ("auto", "plain", "crop", "nchw", "channels_last", "fft", "triton")
# A plan entry that ``auto`` on CUDA resolves per call through the autotuner's cache.
TUNED = "tuned"
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TUNER = Tuner()

_mode_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("unilk_lkconv_mode", default=None)


def _check_mode(mode: str, source: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"{source}: unknown large-kernel conv mode {mode!r}; expected one of {list(MODES)}")
    return mode


def mode_from_env() -> str:
    """The mode ``$UNILK_LKCONV`` names (``"auto"`` when unset): read when a model is built, never in a forward.

    Raises:
        ConfigError: the variable holds an unknown mode.
    """
    return _check_mode(os.environ.get(ENV_VAR, "").strip().lower() or "auto", f"${ENV_VAR}")


def current_mode(chosen: str = "auto") -> str:
    """The mode a call runs in: the innermost :func:`lkconv_mode` block, else ``chosen`` (the caller's own mode).

    Args:
        chosen: the mode the calling layer was built with (``"auto"`` for direct calls).
    """
    override = _mode_override.get()
    return chosen if override is None else override


@contextlib.contextmanager
def lkconv_mode(mode: str) -> Iterator[None]:
    """Use ``mode`` for every :func:`depthwise_conv2d` call inside the block (overrides each model's own mode).

    ``with lkconv_mode("plain"):`` turns a model into its plain-convolution build (same module, same weights).

    Args:
        mode: one of :data:`MODES`.

    Raises:
        ConfigError: unknown mode.
    """
    token = _mode_override.set(_check_mode(mode, "lkconv_mode"))
    try:
        yield
    finally:
        _mode_override.reset(token)


def _is_exporting() -> bool:
    """True while a graph is captured (FX, ``torch.jit.trace``, ``torch.compile``, ``torch.export``, ONNX export):
    the op must then be plain ``F.conv2d``. ONNX export traces through one of these too."""
    return plain_required()


def _direct(x: Tensor, weight: Tensor, bias: Tensor | None, layout: str) -> Tensor:
    """PyTorch's direct depthwise convolution run in ``layout``; the result keeps ``x``'s memory format."""
    k_h, k_w = weight.shape[-2:]
    padding = (k_h // 2, k_w // 2)
    if layout == "nchw":
        return F.conv2d(x.contiguous(), weight, bias, padding=padding, groups=weight.shape[0])
    if layout == "channels_last":
        was_channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        out = F.conv2d(
            x.contiguous(memory_format=torch.channels_last), weight, bias, padding=padding, groups=x.shape[1]
        )
        return out if was_channels_last else out.contiguous()
    raise ConfigError(f"direct depthwise conv: unknown layout {layout!r}; expected 'nchw' or 'channels_last'")


def _triton_ops() -> ModuleType:
    """:mod:`unilk.ops.triton_lkconv`, imported on first use (Triton is optional).

    Raises:
        ConfigError: Triton is not installed.
    """
    try:
        from unilk.ops import triton_lkconv
    except ImportError as err:
        raise ConfigError(
            f"large-kernel conv mode 'triton' needs the triton package, which failed to import ({err}); it ships with "
            "PyTorch's Linux CUDA wheels. Use another UNILK_LKCONV mode (e.g. auto)."
        ) from err
    return triton_lkconv


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _candidates(x: Tensor) -> list[str]:
    """The exact algorithms ``auto`` times on ``x``'s device and dtype; PyTorch's NCHW kernel (the reference) first."""
    names = ["nchw", "channels_last"]
    names += ["fft"] if x.dtype in (torch.float32, torch.float64) else []
    names += ["triton"] if _triton_installed() and x.device.type == "cuda" else []
    return names


def _capturing() -> bool:
    """A CUDA graph is being captured: nothing may be timed or synchronized."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _tuned_conv(x: Tensor, weight: Tensor) -> str:
    """The autotuned algorithm for the forward-direction convolution of ``x`` with ``weight``."""
    key = ("conv", x.shape, weight.shape, x.dtype, _channels_last(x), x.device)
    choice = _TUNER.cached(key)
    if choice is not None:
        return choice
    if _capturing():
        return "nchw"  # untuned shapes in a captured graph record PyTorch's own kernel
    candidates = {name: functools.partial(_conv_in_format, x, weight, None, name) for name in _candidates(x)}
    return _TUNER.choose(key, candidates, tolerance(x.dtype, tf32=x.is_cuda and torch.backends.cudnn.allow_tf32))


def _tuned_weight_grad(x: Tensor, weight: Tensor, grad_out: Tensor) -> str:
    """The autotuned algorithm for the weight gradient."""
    key = ("weight_grad", x.shape, weight.shape, x.dtype, _channels_last(x), _channels_last(grad_out), x.device)
    choice = _TUNER.cached(key)
    if choice is not None:
        return choice
    if _capturing():
        return "nchw"
    names = [*_candidates(x), "corr"]  # the weight gradient as one grouped convolution too
    candidates = {name: functools.partial(_weight_grad, x, weight, grad_out, name) for name in names}
    return _TUNER.choose(key, candidates, tolerance(x.dtype, tf32=x.is_cuda and torch.backends.cudnn.allow_tf32))


def _in_format(out: Tensor, like: Tensor) -> Tensor:
    """``out`` in ``like``'s memory format: a tuned choice must not flip the layout the next layers run in."""
    return out.contiguous(memory_format=torch.channels_last) if _channels_last(like) else out


def _conv_in_format(x: Tensor, weight: Tensor, bias: Tensor | None, algo: str) -> Tensor:
    """:func:`_conv` with the result in ``x``'s memory format (what the autotuner times and returns)."""
    return _in_format(_conv(x, weight, bias, algo), x)


def _tuned_sum(x: Tensor, weights: Sequence[Tensor]) -> str:
    """``"triton"`` (one pass for all kernels) or ``"separate"`` (one autotuned convolution per kernel), by timing."""
    key = ("sum", x.shape, tuple(w.shape for w in weights), x.dtype, _channels_last(x), x.device)
    choice = _TUNER.cached(key)
    if choice is not None:
        return choice
    if _capturing():
        return "separate"

    def separate() -> Tensor:  # what depthwise_conv2d_sum does without autograd otherwise
        out = _conv(x, weights[0], None, TUNED)
        for weight in weights[1:]:
            out = out.add_(_conv(x, weight, None, TUNED))
        return out

    def one_pass() -> Tensor:
        return _triton_ops().conv_forward(x, weights)

    candidates = {"separate": separate, "triton": one_pass}
    return _TUNER.choose(key, candidates, tolerance(x.dtype, tf32=x.is_cuda and torch.backends.cudnn.allow_tf32))


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, algo: str) -> Tensor:
    """Forward-direction convolution with ``algo`` (also used for the input gradient with the flipped kernel)."""
    if algo == TUNED:
        return _conv_in_format(x, weight, bias, _tuned_conv(x, weight))
    if algo == "fft":
        out = fft_depthwise_forward(x, weight)
        return out if bias is None else out + bias.view(1, -1, 1, 1)
    if algo == "triton":
        return _triton_ops().conv_forward(x, (weight,), bias)
    return _direct(x, weight, bias, algo)


def _weight_grad(x: Tensor, weight: Tensor, grad_out: Tensor, algo: str) -> Tensor:
    """The weight gradient alone with ``algo``."""
    if algo == "corr":
        return correlation_weight_grad(x, grad_out, *weight.shape[-2:])
    if algo == "fft":
        return fft_depthwise_backward(x, weight, grad_out, need_input=False, need_weight=True)[1]
    if algo == "triton":
        return _triton_ops().conv_weight_grad(x, grad_out, (weight,))[0]
    return _native_weight_grad(x, weight, grad_out, algo)


def correlation_weight_grad(x: Tensor, grad_out: Tensor, k_h: int, k_w: int, dilation: int = 1) -> Tensor:
    """The weight gradient of a depthwise "same" convolution, computed as one grouped convolution.

    ``grad_w[c, i, j] = sum_{n, h, w} x_pad[n, c, h + i·r, w + j·r] · grad_out[n, c, h, w]`` is, for every (sample,
    channel), the padded input correlated with the output gradient used as the kernel, with stride ``r`` (the
    dilation): one ``groups = N·C`` convolution with a map-sized kernel and a ``k_h x k_w`` output, then a sum over
    the batch. oneDNN runs it far faster than PyTorch's depthwise weight gradient (docs/performance.md).

    Args:
        x: the forward input ``(N, C, H, W)``.
        grad_out: ``(N, C, H, W)``.
        k_h: kernel height (odd).
        k_w: kernel width (odd).
        dilation: the convolution's dilation ``r``.

    Returns:
        ``(C, 1, k_h, k_w)``.
    """
    n, c, height, width = x.shape
    pad_h, pad_w = dilation * (k_h // 2), dilation * (k_w // 2)
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h)).reshape(1, n * c, height + 2 * pad_h, width + 2 * pad_w)
    kernels = grad_out.reshape(n * c, 1, height, width)
    per_sample = F.conv2d(padded, kernels, stride=dilation, groups=n * c)  # (1, N·C, k_h, k_w)
    return per_sample.view(n, c, k_h, k_w).sum(0).unsqueeze(1)


def _native_weight_grad(x: Tensor, weight: Tensor, grad_out: Tensor, layout: str) -> Tensor:
    """PyTorch's depthwise weight gradient computed in ``layout``."""
    if layout == "nchw":
        x, grad_out = x.contiguous(), grad_out.contiguous()
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
    else:
        raise ConfigError(f"weight gradient: unknown layout {layout!r}; expected 'nchw' or 'channels_last'")
    k_h, k_w = weight.shape[-2:]
    _, grad_w, _ = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, [1, 1], [k_h // 2, k_w // 2], [1, 1], False, [0, 0], weight.shape[0],
        [False, True, False],
    )  # fmt: skip
    return grad_w


class _DepthwiseConvFn(torch.autograd.Function):
    """Depthwise same conv whose forward, input gradient and weight gradient each run the planned algorithm."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, plan: Plan) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.plan = plan
        return _conv(x, weight, bias, plan.forward)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        plan: Plan = ctx.plan
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        # The input gradient of a same-padded odd-kernel correlation is the correlation with the flipped kernel.
        flipped = weight.flip(-2, -1)
        input_algo = _tuned_conv(grad_out, flipped) if need_x and plan.input_grad == TUNED else plan.input_grad
        weight_algo = plan.weight_grad
        if need_w and weight_algo == TUNED:
            weight_algo = _tuned_weight_grad(x, weight, grad_out)
        if need_w and weight_algo == "fft":
            # One transform of grad_out serves both gradients when both are FFT.
            both = need_x and input_algo == "fft"
            grad_x, grad_w = fft_depthwise_backward(x, weight, grad_out, need_input=both, need_weight=True)
        elif need_w:
            grad_w = _weight_grad(x, weight, grad_out, weight_algo)
        if need_x and grad_x is None:
            grad_x = _conv(grad_out, flipped, None, input_algo)
        if need_x and plan.input_grad == TUNED:
            grad_x = _in_format(grad_x, x)
        if need_b:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class _DilatedDepthwiseFn(torch.autograd.Function):
    """Dilated depthwise "same" conv: PyTorch's forward and input gradient, the correlation weight gradient (PyTorch's
    own dilated depthwise weight gradient is 10-20x slower on CPU)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        return _dilated_conv(x, weight, bias, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        # the input gradient of a same-padded odd-kernel correlation is the correlation with the flipped kernel
        grad_x = _dilated_conv(grad_out, weight.flip(-2, -1), None, ctx.dilation) if need_x else None
        grad_w = correlation_weight_grad(x, grad_out, *weight.shape[-2:], ctx.dilation) if need_w else None
        grad_b = grad_out.sum((0, 2, 3)) if need_b else None
        return grad_x, grad_w, grad_b, None


def _dilated_conv(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int) -> Tensor:
    k_h, k_w = weight.shape[-2:]
    padding = (dilation * (k_h // 2), dilation * (k_w // 2))
    return F.conv2d(x, weight, bias, padding=padding, dilation=dilation, groups=weight.shape[0])


def _dilated_depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, mode: str, dilation: int) -> Tensor:
    """:func:`depthwise_conv2d` with ``dilation > 1``: on CPU in float32/float64 training, the correlation weight
    gradient; otherwise (inference, other devices and dtypes, ``plain``, graph capture) ``F.conv2d`` itself."""
    autograd = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    fast = (
        mode != "plain"
        and autograd
        and not _is_exporting()
        and x.device.type == "cpu"
        and _supported(x, weight)
        and x.dtype in (torch.float32, torch.float64)
    )
    if fast:
        return _DilatedDepthwiseFn.apply(x, weight, bias, dilation)
    return _dilated_conv(x, weight, bias, dilation)


@dataclasses.dataclass(frozen=True)
class _Route:
    """What :func:`depthwise_conv2d` does for one (mode, shape, dtype, device): decided once, then looked up.

    Attributes:
        crop: slices keeping the kernel taps that can reach the input, or None when every tap can.
        padding: "same" padding of the (cropped) kernel.
        plan: the algorithms per direction, or None for plain ``F.conv2d`` with the cropped kernel.
        onednn: without autograd, the forward is oneDNN's NCHW convolution with the uncropped kernel on float32,
            called directly: the very kernel ``F.conv2d`` runs, minus its backend selection (a few microseconds that
            matter for 7x7 maps at batch 1). Set where that kernel is fast (at most 13 taps wide), where cropping
            does not make it faster.
        native_autograd: every direction runs PyTorch's own algorithm, so training uses ``F.conv2d`` and its autograd
            rather than the custom function (whose Python overhead shows on 7x7 maps).
    """

    crop: tuple[slice, ...] | None
    padding: tuple[int, int]
    plan: Plan | None
    onednn: bool = False
    native_autograd: bool = False


# Routes by (mode, x shape, weight shape, x dtype, weight dtype, x on CPU). Bounded: models see few distinct shapes,
# but a stream of new input sizes must not grow it without limit.
_ROUTES: dict[tuple[object, ...], _Route] = {}
_MAX_ROUTES = 4096


def _crop_slices(k_h: int, k_w: int, height: int, width: int) -> tuple[slice, ...] | None:
    """Slices keeping at most ``2 * size - 1`` taps per side (the rest only ever multiply padding; odd sizes)."""
    keep_h, keep_w = min(k_h, 2 * height - 1), min(k_w, 2 * width - 1)
    if (keep_h, keep_w) == (k_h, k_w):
        return None
    top, left = (k_h - keep_h) // 2, (k_w - keep_w) // 2
    return (slice(None), slice(None), slice(top, top + keep_h), slice(left, left + keep_w))


def _supported(x: Tensor, weight: Tensor) -> bool:
    """A depthwise "same" call with odd kernel sides and one dtype: the shapes every algorithm here computes."""
    return (
        x.dim() == 4
        and weight.dim() == 4
        and weight.shape[1] == 1
        and weight.shape[0] == x.shape[1]
        and weight.shape[2] % 2 == 1
        and weight.shape[3] % 2 == 1
        and weight.dtype == x.dtype
        and x.numel() > 0
    )


def _autocast_inputs(
    x: Tensor, weights: Sequence[Tensor], bias: Tensor | None
) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
    """The inputs cast as ``F.conv2d`` casts them under ``torch.autocast`` (unchanged outside it).

    Casting first lets every algorithm see one dtype (a float32 weight with a bfloat16 activation would otherwise
    send the call to plain ``F.conv2d``); autocast itself does the same cast for the convolution.
    """
    device_type = x.device.type
    if device_type not in ("cuda", "cpu") or not torch.is_autocast_enabled(device_type):
        return x, tuple(weights), bias
    dtype = torch.get_autocast_dtype(device_type)
    weights = tuple(w.to(dtype) for w in weights)
    return x.to(dtype), weights, None if bias is None else bias.to(dtype)


def _make_route(key: tuple[object, ...], mode: str, x: Tensor, weight: Tensor) -> _Route:
    """Decide the route for ``key`` (see :class:`_Route`) and remember it."""
    k_h, k_w = weight.shape[-2:]
    if not _supported(x, weight):  # grouped, strided-shape or mixed-dtype calls: plain F.conv2d, unchanged
        route = _Route(None, (k_h // 2, k_w // 2), None)
    elif mode == "triton" or (mode == "auto" and x.device.type == "cuda"):
        if mode == "triton":
            _triton_ops().check_device(x)
        crop = _crop_slices(k_h, k_w, *x.shape[-2:])
        keep_h, keep_w = (k_h, k_w) if crop is None else (crop[2].stop - crop[2].start, crop[3].stop - crop[3].start)
        algo = "triton" if mode == "triton" else TUNED
        plan = Plan(algo, algo, algo) if x.dtype in _FLOAT_DTYPES else None
        route = _Route(crop, (keep_h // 2, keep_w // 2), plan)
    else:
        n, c, height, width = x.shape
        crop = _crop_slices(k_h, k_w, height, width)
        keep_h, keep_w = (k_h, k_w) if crop is None else (crop[2].stop - crop[2].start, crop[3].stop - crop[3].start)
        # The auto rules were measured on CPU in float32/float64; on devices other than CPU and CUDA "auto" applies
        # only the exact crop, and a forced algorithm runs as asked.
        # A forced direct layout runs in 16-bit too (FFT stays float32/float64: cuFFT has no bfloat16).
        forced_or_cpu = mode != "auto" or x.device.type == "cpu"
        exact_dtype = x.dtype in (torch.float32, torch.float64) or (
            mode in ("nchw", "channels_last") and x.dtype in _FLOAT_DTYPES
        )
        plannable = mode != "crop" and forced_or_cpu and exact_dtype
        plan = choose_plan(mode, n, c, height, width, keep_h, keep_w) if plannable else None
        onednn = (
            plan is not None
            and plan.forward == "nchw"
            and k_w <= NCHW_MAX_WIDTH
            and x.dtype == torch.float32
            and x.device.type == "cpu"
            and torch.backends.mkldnn.is_available()
        )
        native = plan == Plan("nchw", "nchw", "nchw")
        route = _Route(crop, (keep_h // 2, keep_w // 2), plan, onednn, native)
    if len(_ROUTES) >= _MAX_ROUTES:
        _ROUTES.clear()
    _ROUTES[key] = route
    return route


def depthwise_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, mode: str = "auto", dilation: int = 1
) -> Tensor:
    """Depthwise "same" convolution with stride 1, computed by the fastest exact algorithm for the shape.

    The result equals ``F.conv2d(x, weight, bias, padding=(k_h // 2, k_w // 2), groups=C)`` within floating-point
    rounding (<= 1e-5 relative to the output's scale, forward and gradients). Gradients flow to ``x``, ``weight`` and
    ``bias``. The output has ``x``'s memory format. The choice is made once per shape, dtype and mode and then looked
    up, so a call costs a few microseconds more than ``F.conv2d`` itself.

    Args:
        x: input ``(N, C, H, W)``.
        weight: depthwise kernel ``(C, 1, k_h, k_w)`` with odd ``k_h`` and ``k_w``.
        bias: ``(C,)`` or None.
        mode: the algorithm choice (one of :data:`MODES`; a :func:`lkconv_mode` block overrides it). Layers pass the
            mode their model was built with (``$UNILK_LKCONV``, read then).
        dilation: a dilated kernel (padding ``dilation * (k // 2)``): PyTorch's forward and input gradient, and on CPU
            in training the fast correlation weight gradient in every mode but ``plain``.

    Returns:
        ``(N, C, H, W)``.

    Raises:
        ConfigError: unknown ``mode``.
    """
    mode = _check_mode(current_mode(mode), "depthwise_conv2d")
    if dilation != 1:
        x, (weight,), bias = _autocast_inputs(x, (weight,), bias)
        return _dilated_depthwise_conv2d(x, weight, bias, mode, dilation)
    if mode == "plain" or _is_exporting():
        k_h, k_w = weight.shape[-2:]
        return F.conv2d(x, weight, bias, padding=(k_h // 2, k_w // 2), groups=weight.shape[0])
    x, (weight,), bias = _autocast_inputs(x, (weight,), bias)
    key = (mode, x.shape, weight.shape, x.dtype, weight.dtype, x.is_cpu)
    route = _ROUTES.get(key) or _make_route(key, mode, x, weight)
    autograd = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if route.onednn and not autograd and x.is_contiguous() and torch._C._get_mkldnn_enabled():
        k_h, k_w = weight.shape[-2:]
        return torch.mkldnn_convolution(x, weight.contiguous(), bias, (k_h // 2, k_w // 2), (1, 1), (1, 1), x.shape[1])
    if route.crop is not None:
        weight = weight[route.crop]
    plan = route.plan
    if plan is None or (route.native_autograd and autograd):
        return F.conv2d(x, weight, bias, padding=route.padding, groups=weight.shape[0])
    if autograd:
        return _DepthwiseConvFn.apply(x, weight, bias, plan)
    return _conv(x, weight, bias, plan.forward)


def depthwise_conv2d_sum(
    x: Tensor, weights: Sequence[Tensor], bias: Tensor | None = None, *, mode: str = "auto"
) -> Tensor:
    """The sum of depthwise "same" convolutions of one input with several kernels, e.g. SLaK's M×N and N×M pair.

    Equals ``sum(depthwise_conv2d(x, w) for w in weights) + bias``. In the ``triton`` mode one kernel computes the
    whole sum in one pass over ``x`` (and one more for each gradient). Otherwise, without autograd, the terms are added
    into the first one in place (outside ``lkconv_mode("plain")``), so no extra full-size map is allocated per term.

    Args:
        x: input ``(N, C, H, W)``.
        weights: one or more depthwise kernels ``(C, 1, k_h, k_w)`` with odd sides.
        bias: ``(C,)`` or None, added once.
        mode: as for :func:`depthwise_conv2d`.

    Returns:
        ``(N, C, H, W)``.

    Raises:
        ValueError: ``weights`` is empty.
        ConfigError: unknown ``mode``.
    """
    if not weights:
        raise ValueError("depthwise_conv2d_sum: weights is empty; pass at least one kernel")
    mode = _check_mode(current_mode(mode), "depthwise_conv2d_sum")
    tensors = (x, *weights) if bias is None else (x, bias, *weights)
    autograd = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    # auto on CUDA weighs the one-pass Triton sum against the separate (each autotuned) convolutions; only without
    # autograd, where only the forward is timed (SLaK's deploy form, which uses this op, is inference).
    tuned_sum = mode == "auto" and x.is_cuda and not autograd and _triton_installed()
    if len(weights) > 1 and (mode == "triton" or tuned_sum) and not _is_exporting():
        x, weights, bias = _autocast_inputs(x, weights, bias)
        if all(_supported(x, weight) for weight in weights):
            crops = [_crop_slices(*weight.shape[-2:], *x.shape[-2:]) for weight in weights]
            cropped = [weight if crop is None else weight[crop] for weight, crop in zip(weights, crops)]
            if mode == "triton" or _tuned_sum(x, cropped) == "triton":
                return _triton_ops().depthwise_conv2d_triton(x, cropped, bias)
    out = depthwise_conv2d(x, weights[0], bias, mode=mode)
    in_place = mode != "plain" and not autograd
    for weight in weights[1:]:
        term = depthwise_conv2d(x, weight, mode=mode)
        out = out.add_(term) if in_place else out + term
    return out
