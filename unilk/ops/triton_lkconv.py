"""Triton kernels for the depthwise "same" convolution with large, rectangular and summed kernels.

Every kernel works on a *tap list*: tap ``t`` has a per-channel weight ``w[c, t]`` and an offset ``(dh[t], dw[t])``,
and the forward output is ``y[n, c, h, w] = sum_t w[c, t] * x[n, c, h + dh[t], w + dw[t]]`` (zero outside the map).
A ``k_h x k_w`` kernel is the tap list of its ``k_h * k_w`` positions centred on the middle tap; SLaK's M×N and N×M
pair is the two tap lists concatenated, so the sum of both convolutions is computed in one pass over the map.

- forward: one program per (image, block of channels, block of output positions) loops over the taps;
- input gradient: the same kernel with the offsets negated (``dx[q] = sum_t w[t] g[q - d_t]``);
- weight gradient: one program per (block of channels, block of taps, slice of the batch) reduces
  ``g[n, c, p] * x[n, c, p + d_t]`` over its positions; the batch slices' partial sums are added in PyTorch;
- bias gradient: ``grad_out.sum((0, 2, 3))`` in PyTorch.

Inputs are read through their strides (NCHW, channels-last, non-contiguous views, broadcast gradients) and the output
keeps the channels-last format when the input has it. float16, bfloat16 and float32 accumulate in float32, float64 in
float64. Stride 1 and odd kernel sides only; taps beyond the map only multiply zeros (crop them first to save time).

Triton and a CUDA device are needed, except under ``TRITON_INTERPRET=1``, where the kernels run on CPU tensors (slowly;
that is how the tests check them). Triton reads that variable when a kernel is decorated, so the kernels are
decorated on first use, once per interpreter setting. Importing this module needs Triton.
"""

import dataclasses
import functools
import os
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from unilk.errors import ConfigError

__all__ = [
    "INTERPRET_ENV_VAR",
    "check_device",
    "interpreting",
    "depthwise_conv2d_triton",
    "conv_forward",
    "conv_weight_grad",
]

INTERPRET_ENV_VAR = "TRITON_INTERPRET"
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Programs the weight gradient aims for before splitting the batch further (a few waves on a 100+ SM GPU).
_TARGET_PROGRAMS = 1024


def _conv_kernel(
    x_ptr,
    w_ptr,
    dh_ptr,
    dw_ptr,
    b_ptr,
    out_ptr,
    channels,
    height,
    width,
    taps,
    sxn,
    sxc,
    sxh,
    sxw,
    son,
    soc,
    soh,
    sow,
    has_bias: tl.constexpr,
    acc_dtype: tl.constexpr,
    block_c: tl.constexpr,
    block_p: tl.constexpr,
):
    """out[n, c, p] = sum_t w[c, t] x[n, c, p + d_t] (+ b[c]).

    Grid (batch * cdiv(channels, block_c), cdiv(height * width, block_p)).
    """
    c_blocks = (channels + block_c - 1) // block_c
    pid_nc = tl.program_id(0)
    n = (pid_nc // c_blocks).to(tl.int64)
    cs = (pid_nc % c_blocks) * block_c + tl.arange(0, block_c)
    ps = tl.program_id(1) * block_p + tl.arange(0, block_p)
    hs = ps // width
    ws = ps % width
    c_ok = cs < channels
    p_ok = ps < height * width
    x_rows = x_ptr + n * sxn + cs.to(tl.int64)[:, None] * sxc
    acc = tl.full((block_c, block_p), 0, dtype=acc_dtype)
    for t in range(taps):
        dh = tl.load(dh_ptr + t)
        dw = tl.load(dw_ptr + t)
        h_in = hs + dh
        w_in = ws + dw
        inside = p_ok & (h_in >= 0) & (h_in < height) & (w_in >= 0) & (w_in < width)
        xv = tl.load(x_rows + (h_in * sxh + w_in * sxw)[None, :], mask=c_ok[:, None] & inside[None, :], other=0.0)
        wv = tl.load(w_ptr + cs * taps + t, mask=c_ok, other=0.0)
        acc += xv.to(acc_dtype) * wv.to(acc_dtype)[:, None]
    if has_bias:
        acc += tl.load(b_ptr + cs, mask=c_ok, other=0.0).to(acc_dtype)[:, None]
    out_ptrs = out_ptr + n * son + cs.to(tl.int64)[:, None] * soc + (hs * soh + ws * sow)[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=c_ok[:, None] & p_ok[None, :])


def _weight_grad_kernel(
    x_ptr,
    g_ptr,
    dh_ptr,
    dw_ptr,
    part_ptr,
    batch,
    channels,
    height,
    width,
    taps,
    n_per_split,
    sxn,
    sxc,
    sxh,
    sxw,
    sgn,
    sgc,
    sgh,
    sgw,
    acc_dtype: tl.constexpr,
    block_c: tl.constexpr,
    block_t: tl.constexpr,
    block_p: tl.constexpr,
    interpreted: tl.constexpr,
    add: tl.constexpr,
):
    """part[s, c, t] = sum over the batch slice s and all positions p of g[n, c, p] x[n, c, p + d_t].

    Grid (cdiv(channels, block_c), cdiv(taps, block_t), splits).
    """
    cs = tl.program_id(0) * block_c + tl.arange(0, block_c)
    ts = tl.program_id(1) * block_t + tl.arange(0, block_t)
    split = tl.program_id(2)
    c_ok = cs < channels
    t_ok = ts < taps
    dh = tl.load(dh_ptr + ts, mask=t_ok, other=0)
    dw = tl.load(dw_ptr + ts, mask=t_ok, other=0)
    c64 = cs.to(tl.int64)
    acc = tl.full((block_c, block_t, block_p), 0, dtype=acc_dtype)
    n_start = split * n_per_split
    n_stop = tl.minimum(n_start + n_per_split, batch)
    # Per-image base pointers advance by one image stride per step (pointer arithmetic is 64-bit).
    x_image = x_ptr + n_start.to(tl.int64) * sxn + c64[:, None, None] * sxc
    g_image = g_ptr + n_start.to(tl.int64) * sgn + c64[:, None] * sgc
    for _ in range(n_start, n_stop):
        for p0 in range(0, height * width, block_p):
            ps = p0 + tl.arange(0, block_p)
            hs = ps // width
            ws = ps % width
            p_ok = ps < height * width
            g_ptrs = g_image + (hs * sgh + ws * sgw)[None, :]
            gv = tl.load(g_ptrs, mask=c_ok[:, None] & p_ok[None, :], other=0.0).to(acc_dtype)
            h_in = hs[None, :] + dh[:, None]
            w_in = ws[None, :] + dw[:, None]
            inside = t_ok[:, None] & p_ok[None, :] & (h_in >= 0) & (h_in < height) & (w_in >= 0) & (w_in < width)
            x_ptrs = x_image + (h_in * sxh + w_in * sxw)[None, :, :]
            xv = tl.load(x_ptrs, mask=c_ok[:, None, None] & inside[None, :, :], other=0.0).to(acc_dtype)
            acc += gv[:, None, :] * xv
        x_image += sxn
        g_image += sgn
    if interpreted:  # noqa: SIM108 - a statement-level `if` on a constexpr is pruned before compilation
        part = tl.reduce(acc, 2, add)
    else:
        part = tl.sum(acc, axis=2)
    part_ptrs = part_ptr + (split.to(tl.int64) * channels + c64[:, None]) * taps + ts[None, :]
    tl.store(part_ptrs, part, mask=c_ok[:, None] & t_ok[None, :])


def _add(a, b):
    """The weight gradient's sum under the interpreter, passed in as a kernel argument: ``tl.sum`` is decorated when
    Triton is imported, so the interpreter could only run it had ``TRITON_INTERPRET`` been set before that import.
    Compiled kernels use ``tl.sum`` (the two compute the same sum)."""
    return a + b


def interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to run kernels on the CPU."""
    return os.environ.get(INTERPRET_ENV_VAR, "0").strip().lower() in ("1", "true", "on", "yes")


@dataclasses.dataclass(frozen=True)
class _Kernels:
    conv: object
    weight_grad: object
    add: object | None


@functools.cache
def _kernels(interpret: bool) -> _Kernels:
    """The kernels decorated under ``interpret``, which must be :func:`interpreting`'s answer now: Triton picks the
    interpreter or the compiler from the environment at decoration time."""
    return _Kernels(triton.jit(_conv_kernel), triton.jit(_weight_grad_kernel), triton.jit(_add) if interpret else None)


def _acc_dtype(dtype: torch.dtype) -> object:
    """Triton's accumulator dtype for inputs of ``dtype``: float64 for float64, float32 otherwise."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def check_device(x: Tensor) -> None:
    """Raise a clear error unless the Triton kernels can run on ``x``.

    Raises:
        ConfigError: ``x`` is not on a CUDA device (CPU tensors are accepted under ``TRITON_INTERPRET=1``), or its
            dtype is not float16, bfloat16, float32 or float64.
    """
    if x.dtype not in _DTYPES:
        raise ConfigError(f"triton lkconv: dtype {x.dtype} is not supported; expected one of {list(_DTYPES)}")
    if x.device.type == "cuda":
        return
    if x.device.type == "cpu" and interpreting():
        return
    raise ConfigError(
        f"triton lkconv: tensors on {x.device} cannot run the Triton kernels; they need a CUDA device "
        f"(or CPU tensors with {INTERPRET_ENV_VAR}=1, Triton's slow interpreter for tests). "
        "Use another UNILK_LKCONV mode (e.g. auto) on this device."
    )


@functools.lru_cache(maxsize=256)
def _offsets(shapes: tuple[tuple[int, int], ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """int32 ``(dh, dw)`` of the concatenated tap lists of kernels with the given ``(k_h, k_w)`` sides."""
    dh, dw = [], []
    for k_h, k_w in shapes:
        rows = torch.arange(k_h, dtype=torch.int32) - k_h // 2
        cols = torch.arange(k_w, dtype=torch.int32) - k_w // 2
        dh.append(rows.repeat_interleave(k_w))
        dw.append(cols.repeat(k_h))
    return torch.cat(dh).to(device), torch.cat(dw).to(device)


def _check_kernels(x: Tensor, weights: Sequence[Tensor]) -> tuple[tuple[int, int], ...]:
    """The kernels' ``(k_h, k_w)`` after checking they fit ``x`` (depthwise, odd sides, ``x``'s dtype and device)."""
    if x.dim() != 4:
        raise ConfigError(f"triton lkconv: x must be (N, C, H, W); got shape {tuple(x.shape)}")
    if not weights:
        raise ConfigError("triton lkconv: no kernel given; pass at least one (C, 1, k_h, k_w) weight")
    check_device(x)
    channels = x.shape[1]
    shapes = []
    for weight in weights:
        k_h, k_w = weight.shape[-2:]
        if weight.dim() != 4 or weight.shape[:2] != (channels, 1) or k_h % 2 == 0 or k_w % 2 == 0:
            raise ConfigError(
                f"triton lkconv: weight of shape {tuple(weight.shape)} does not fit x of shape {tuple(x.shape)}; "
                f"expected ({channels}, 1, k_h, k_w) with odd k_h and k_w"
            )
        if weight.dtype != x.dtype or weight.device != x.device:
            raise ConfigError(
                f"triton lkconv: weight is {weight.dtype} on {weight.device}, x is {x.dtype} on {x.device}; "
                "they must match"
            )
        shapes.append((k_h, k_w))
    return tuple(shapes)


def _is_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _conv_blocks(x: Tensor) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_P)``: runs of channels when they are adjacent in memory, of positions otherwise."""
    if x.stride(1) == 1 and x.shape[1] > 1:
        block_c = min(64, triton.next_power_of_2(x.shape[1]))
        return block_c, max(1, 2048 // block_c)
    return 1, min(1024, max(16, triton.next_power_of_2(x.shape[2] * x.shape[3])))


def conv_forward(x: Tensor, weights: Sequence[Tensor], bias: Tensor | None = None, negate: bool = False) -> Tensor:
    """Sum of the depthwise "same" convolutions of ``x`` with each kernel, plus ``bias`` (no autograd).

    Args:
        x: ``(N, C, H, W)``, any strides.
        weights: kernels ``(C, 1, k_h, k_w)``, odd sides, ``x``'s dtype.
        bias: ``(C,)`` or None.
        negate: use the mirrored taps: the input gradient of the forward with the same kernels.

    Returns:
        ``(N, C, H, W)`` in ``x``'s dtype, channels-last when ``x`` is.
    """
    shapes = _check_kernels(x, weights)
    n, c, h, w = x.shape
    out = torch.empty_like(x, memory_format=torch.channels_last if _is_channels_last(x) else torch.contiguous_format)
    if out.numel() == 0:
        return out
    taps = torch.cat([weight.reshape(c, -1) for weight in weights], dim=1).contiguous()
    dh, dw = _offsets(shapes, x.device)
    if negate:
        dh, dw = -dh, -dw
    block_c, block_p = _conv_blocks(x)
    grid = (n * triton.cdiv(c, block_c), triton.cdiv(h * w, block_p))
    _kernels(interpreting()).conv[grid](
        x, taps, dh, dw, taps if bias is None else bias.contiguous(), out,
        c, h, w, taps.shape[1], *x.stride(), *out.stride(),
        has_bias=bias is not None, acc_dtype=_acc_dtype(x.dtype), block_c=block_c, block_p=block_p,
    )  # fmt: skip
    return out


def conv_weight_grad(x: Tensor, grad_out: Tensor, weights: Sequence[Tensor]) -> list[Tensor]:
    """Gradients of each kernel of :func:`conv_forward` (no autograd).

    Args:
        x: the forward input ``(N, C, H, W)``.
        grad_out: ``(N, C, H, W)``, any strides (broadcast views included).
        weights: the forward's kernels; only their shapes and dtype are used.

    Returns:
        One ``(C, 1, k_h, k_w)`` gradient per kernel, in the kernels' dtype.
    """
    shapes = _check_kernels(x, weights)
    n, c, h, w = x.shape
    total = sum(k_h * k_w for k_h, k_w in shapes)
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.numel() == 0:
        flat = torch.zeros(c, total, dtype=acc_dtype, device=x.device)
    else:
        dh, dw = _offsets(shapes, x.device)
        if x.stride(1) == 1 and c > 1:
            block_c, block_t, block_p = min(32, triton.next_power_of_2(c)), 8, 16
        else:
            block_c, block_t, block_p = 1, 16, min(128, max(16, triton.next_power_of_2(h * w)))
        base = triton.cdiv(c, block_c) * triton.cdiv(total, block_t)
        splits = max(1, min(n, _TARGET_PROGRAMS // base))
        n_per_split = triton.cdiv(n, splits)
        splits = triton.cdiv(n, n_per_split)
        part = torch.empty(splits, c, total, dtype=acc_dtype, device=x.device)
        grid = (triton.cdiv(c, block_c), triton.cdiv(total, block_t), splits)
        interpreted = interpreting()
        kernels = _kernels(interpreted)
        kernels.weight_grad[grid](
            x, grad_out, dh, dw, part, n, c, h, w, total, n_per_split, *x.stride(), *grad_out.stride(),
            interpreted=interpreted, add=kernels.add, acc_dtype=_acc_dtype(x.dtype),
            block_c=block_c, block_t=block_t, block_p=block_p,
        )  # fmt: skip
        flat = part.sum(0)
    grads, start = [], 0
    for (k_h, k_w), weight in zip(shapes, weights):
        grads.append(flat[:, start : start + k_h * k_w].reshape(c, 1, k_h, k_w).to(weight.dtype))
        start += k_h * k_w
    return grads


def _bias_grad(grad_out: Tensor) -> Tensor:
    """``grad_out.sum((0, 2, 3))`` accumulated in float32 (float64 for float64), in ``grad_out``'s dtype."""
    acc_dtype = torch.float64 if grad_out.dtype == torch.float64 else torch.float32
    return grad_out.sum((0, 2, 3), dtype=acc_dtype).to(grad_out.dtype)


class _TritonDepthwiseFn(torch.autograd.Function):
    """``sum_i conv(x, weights[i]) + bias`` with the Triton kernels in every direction."""

    @staticmethod
    def forward(ctx, x: Tensor, bias: Tensor | None, *weights: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, *weights)
        return conv_forward(x, weights, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, *weights = ctx.saved_tensors
        need_x, need_b, *need_w = ctx.needs_input_grad
        grad_x = conv_forward(grad_out, weights, None, negate=True) if need_x else None
        grad_b = _bias_grad(grad_out) if need_b else None
        grad_w: list[Tensor | None] = [None] * len(weights)
        if any(need_w):
            grad_w = list(conv_weight_grad(x, grad_out, weights))
        return (grad_x, grad_b, *grad_w)


def depthwise_conv2d_triton(x: Tensor, weights: Sequence[Tensor], bias: Tensor | None = None) -> Tensor:
    """``sum(F.conv2d(x, w, padding=(k_h // 2, k_w // 2), groups=C) for w in weights) + bias`` by Triton, with autograd.

    One kernel is the plain large-kernel convolution; SLaK's M×N and N×M pair is computed in one pass over ``x``.

    Args:
        x: ``(N, C, H, W)``, float16/bfloat16/float32/float64, any strides, on CUDA (or CPU under
            ``TRITON_INTERPRET=1``).
        weights: one or more ``(C, 1, k_h, k_w)`` kernels with odd sides, ``x``'s dtype.
        bias: ``(C,)`` or None, added once.

    Returns:
        ``(N, C, H, W)``, channels-last when ``x`` is.

    Raises:
        ConfigError: the device, dtype or kernel shapes are not supported.
    """
    if bias is not None and (bias.shape != (x.shape[1],) or bias.dtype != x.dtype):
        raise ConfigError(
            f"triton lkconv: bias of shape {tuple(bias.shape)} and dtype {bias.dtype} does not fit x "
            f"{tuple(x.shape)} {x.dtype}; expected ({x.shape[1]},) in x's dtype"
        )
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, bias, *weights)):
        return _TritonDepthwiseFn.apply(x, bias, *weights)
    return conv_forward(x, weights, bias)
