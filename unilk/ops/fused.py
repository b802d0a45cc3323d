"""The elementwise tails of UniRepLKNet and SLaK (ConvNeXt-style) blocks, fused into their two pointwise matmuls.

A UniRepLKNet block after its depthwise conv (and norm) runs::

    y = x * SE(x)                       # per-(sample, channel) gate: one full pass over the map
    h = GELU(Linear1(permute(y)))       # NCHW -> NHWC permute forces a copy before the matmul
    g = (gamma * Nx(h) + 1) * h + beta  # GRN: a per-(sample, hidden channel) scale, one more full pass
    out = Linear2(g)

The fused form runs the two Linears as batched matmuls ``W @ X`` on the ``(N, C, H·W)`` view of the NCHW map, so no
permute copy is made and the result comes back NCHW-contiguous for the next depthwise conv. Both the SE gate and the
GRN scale are per-sample diagonal matrices between a map and a Linear, so they can be moved onto the Linear's weight:
``W (s * x) == (W * s) x``. Scaling the weight costs ``N·C_out·C_in`` multiplies instead of ``N·C_in·H·W``, which is
cheaper whenever ``H·W > C_out``. ``beta`` of the GRN folds into the second Linear's bias, and in deploy form the
block's shortcut is added inside the last matmul. Without autograd, the GELU and the gates work in place on the hidden
map: on CPU a fresh multi-megabyte tensor costs more in page faults than the elementwise arithmetic itself. Only the
order of floating-point operations changes, so results match the unfused chain to rounding (about 1e-7 relative per
block in float32).

SLaK's block (LayerNorm -> Linear -> GELU -> Linear -> layer scale, :func:`convnext_block_tail`) gets the same
treatment: the LayerNorm normalises the NCHW map over channels, its affine part folds into Linear1 and the layer scale
into Linear2.

The same switch turns on two more rounding-level rewrites outside the blocks: ``LayerNorm2d`` (the stems and
downsampling layers) runs :func:`channel_layer_norm`, and UniRepLKNet runs its stem channels-last on CPU, where its
dense 3x3 convolutions are 3-5x faster.

The fast path is on by default: it passes the exactness policy of docs/performance.md (against a float64 run, its
relative error is within a small factor of the plain float32 build's). A model chooses it once, when it is built
(:func:`fast_path_from_env`, ``$UNILK_FAST_PATH``), and ``model.set_fast_path(False)`` gives the plain bit-reference
build; ``with fused_tail(False):`` overrides both inside the block. It is never used in ``lkconv_mode("plain")``,
under ``torch.autocast``, nor while a graph is captured (FX, TorchScript, ``torch.compile``, export).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unilk.errors import ConfigError
from unilk.ops._onednn import LinearFn, onednn_linear
from unilk.ops.lkconv import _is_exporting, current_mode

if TYPE_CHECKING:
    from unilk.layers.grn import GRNwithNHWC

__all__ = [
    "ENV_VAR",
    "LEGACY_ENV_VAR",
    "channel_layer_norm",
    "convnext_block_tail",
    "fast_path_from_env",
    "fused_enabled",
    "fused_tail",
    "release_workspace",
    "unireplknet_block_tail",
]


ENV_VAR = "UNILK_FAST_PATH"
LEGACY_ENV_VAR = "UNILK_FUSED_TAIL"  # the opt-in switch of earlier releases, still honoured
_ON_VALUES = ("1", "on", "true", "yes")
_OFF_VALUES = ("0", "off", "false", "no")


def fast_path_from_env() -> bool:
    """Whether a model being built takes the fast path: ``$UNILK_FAST_PATH``, else ``$UNILK_FUSED_TAIL``, else on.

    Read once, when a model is built (never in a forward), so a bad value fails there.

    Raises:
        ConfigError: the variable holds something other than 1/on/true/yes or 0/off/false/no.
    """
    for name in (ENV_VAR, LEGACY_ENV_VAR):
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        value = raw.lower()
        if value in _ON_VALUES:
            return True
        if value in _OFF_VALUES:
            return False
        raise ConfigError(
            f"${name}={raw!r} is not a fast-path setting; allowed values: {', '.join(_ON_VALUES)} (fast path, the "
            f"default) or {', '.join(_OFF_VALUES)} (plain bit-reference build)"
        )
    return True


_override: contextvars.ContextVar[bool | None] = contextvars.ContextVar("unilk_fused_tail", default=None)


@contextlib.contextmanager
def fused_tail(enabled: bool = True) -> Iterator[None]:
    """Turn the fast path (block tails, fast ``LayerNorm2d``, channels-last UniRepLKNet stem) on or off inside the
    block, overriding every model's own choice (``set_fast_path``)."""
    token = _override.set(enabled)
    try:
        yield
    finally:
        _override.reset(token)


def fused_enabled(chosen: bool = True) -> bool:
    """Whether a layer whose own setting is ``chosen`` runs its fast form now: :func:`fused_tail` overrides the
    setting; never in ``lkconv_mode("plain")``, never while exporting or tracing, and never under ``torch.autocast``
    (the module chain keeps autocast's per-op precision rules; the fused matmuls would see mixed dtypes).

    Raises:
        ConfigError: ``UNILK_LKCONV`` holds an unknown mode.
    """
    if current_mode() == "plain" or _is_exporting() or _autocasting():
        return False
    override = _override.get()
    return chosen if override is None else override


def _autocasting() -> bool:
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def _inference(*tensors: Tensor | None) -> bool:
    """True when no autograd graph is recorded for these tensors, so temporaries may be overwritten in place."""
    return not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors)


def _flat(x: Tensor) -> Tensor:
    """The ``(N, C, H·W)`` view of an NCHW map (copied first only if it is not contiguous)."""
    n, c, height, width = x.shape
    return x.contiguous().view(n, c, height * width)


def _gelu(h: Tensor, in_place: bool) -> Tensor:
    """Exact (erf) GELU, in place when allowed: a fresh multi-megabyte output costs page faults, not arithmetic."""
    return torch.ops.aten.gelu_(h) if in_place else F.gelu(h)


# The reusable per-thread buffers, one per kind of temporary: a slot holds at most one live tensor at a time (the
# hidden map of a tail; the squares of a sum of squares), so no two tensors of one computation share memory.
HIDDEN, SQUARES = "hidden", "squares"


class _Workspace(threading.local):
    """Reusable CPU buffers per thread, one per slot (:data:`HIDDEN`, :data:`SQUARES`)."""

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}


_workspace = _Workspace()


def release_workspace() -> None:
    """Free this thread's workspace (it holds the largest maps seen, e.g. ~200 MB for SLaK-T at batch 32)."""
    _workspace.buffers.clear()


def _scratch(slot: str, shape: tuple[int, ...], like: Tensor, in_place: bool) -> Tensor | None:
    """Slot ``slot``'s reusable buffer for a temporary on CPU without autograd, else None (the op allocates).

    A temporary that never leaves its op can live in one buffer shared by every block. A fresh multi-megabyte CPU
    tensor is mapped page by page on first write, which costs more than the matmul's bias fill and the GELU together.
    """
    if not in_place or like.device.type != "cpu":
        return None
    numel = math.prod(shape)
    buffer = _workspace.buffers.get(slot)
    if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype:
        # A normal tensor even under torch.inference_mode: an inference tensor could not be written later by a
        # forward that runs under torch.no_grad alone.
        with torch.inference_mode(False):
            buffer = _workspace.buffers[slot] = torch.empty(numel, dtype=like.dtype)
    return buffer[:numel].view(shape)


def _pointwise(
    weight: Tensor,
    x_ncl: Tensor,
    bias: Tensor | None,
    scale: Tensor | None = None,
    *,
    in_place: bool = False,
    accumulate: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """A per-pixel Linear on an NCHW map, ``W (diag(scale) x) + bias``, as one batched matmul ``W @ X``.

    Args:
        weight: ``(C_out, C_in)``.
        x_ncl: ``(N, C_in, L)``, contiguous (an NCHW map viewed with ``L = H * W``).
        bias: ``(C_out,)`` or None.
        scale: per-sample input-channel scale ``(N, C_in)`` or None. It multiplies the weight (``N·C_out·C_in``
            products) when that is cheaper than multiplying the map (``N·C_in·L``).
        in_place: ``x_ncl`` is a temporary that may be scaled in place.
        accumulate: ``(N, C_out, L)`` added to the result (a residual), or None.
        out: ``(N, C_out, L)`` buffer for the result (not with ``accumulate``), or None.

    Returns:
        ``(N, C_out, L)``, contiguous.
    """
    length, c_out = x_ncl.shape[-1], weight.shape[0]
    lhs = weight
    if scale is not None and length > c_out:
        lhs = weight * scale.unsqueeze(1)  # (N, C_out, C_in)
    elif scale is not None:
        x_ncl = x_ncl.mul_(scale.unsqueeze(-1)) if in_place else x_ncl * scale.unsqueeze(-1)
    if lhs.dim() == 2:
        # One weight for every sample: matmul broadcasts it (bmm on a stride-0 expanded weight hits a slow path,
        # 10x on C=40 maps of 56x56).
        result = torch.matmul(lhs, x_ncl, out=out)
        if accumulate is not None:
            result = result.add_(accumulate)
        return result if bias is None else result.add_(bias.view(1, -1, 1))
    if accumulate is not None:
        result = torch.baddbmm(accumulate, lhs, x_ncl)
        return result if bias is None else result.add_(bias.view(1, -1, 1))
    if bias is None:
        return torch.bmm(lhs, x_ncl, out=out)
    return torch.baddbmm(bias.view(1, -1, 1), lhs, x_ncl, out=out)


def channel_layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm over the channels of an NCHW map (``LayerNorm2d``), with fewer passes and temporaries.

    Equals :func:`unilk.layers.norm.layer_norm_2d` within float rounding. A channels-last map goes through
    ``F.layer_norm`` on its ``(N, H, W, C)`` view (contiguous, one pass) and stays channels-last. Otherwise, without
    autograd, the output is normalised in place and the squared deviations go to the reusable workspace, so one fresh
    map (the output) is allocated instead of five.

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(C,)``; ``bias``: ``(C,)``.
        eps: added to the biased variance.

    Returns:
        ``(N, C, H, W)``, in the memory format of ``x``.
    """
    channels = x.shape[1]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.layer_norm(x.permute(0, 2, 3, 1), (channels,), weight, bias, eps).permute(0, 3, 1, 2)
    scale, shift = weight.view(-1, 1, 1), bias.view(-1, 1, 1)
    centred = x - x.sum(1, keepdim=True).div_(channels)
    if not _inference(x, weight, bias):
        inv_std = torch.rsqrt(centred.square().sum(1, keepdim=True) / channels + eps)
        return torch.addcmul(shift, centred * inv_std, scale)
    squares = torch.mul(centred, centred, out=_scratch(SQUARES, tuple(x.shape), x, True))
    centred.mul_(squares.sum(1, keepdim=True).div_(channels).add_(eps).rsqrt_())
    return torch.addcmul(shift, centred, scale, out=centred)


def _sum_of_squares(x: Tensor, dim: int) -> Tensor:
    """``(x * x).sum(dim)`` without autograd, the squares in the workspace: over a non-innermost dim this is 4-20x
    faster on CPU than ``vector_norm``'s reduction."""
    return torch.mul(x, x, out=_scratch(SQUARES, tuple(x.shape), x, True)).sum(dim)


def _small_map_linear(y: Tensor, hidden: int, in_place: bool) -> LinearFn | None:
    """oneDNN's linear for a tail whose map has at most ``hidden`` positions (float32 CPU inference), else None."""
    small = y.shape[-2] * y.shape[-1] <= hidden
    return onednn_linear() if small and in_place and y.device.type == "cpu" and y.dtype == torch.float32 else None


def _layer_scaled(weight: Tensor, bias: Tensor, gamma: Tensor | None) -> tuple[Tensor, Tensor]:
    """A Linear's weight and bias with a per-output-channel layer scale folded in (unchanged without one)."""
    return (weight, bias) if gamma is None else (weight * gamma[:, None], bias * gamma)


def _back_to_nchw(out_nlc: Tensor, residual: Tensor | None, size: tuple[int, int]) -> Tensor:
    """``(N, L, C)`` -> NCHW-contiguous ``(N, C, H, W)``, the shortcut (if any) added during the copy."""
    n, length, c = out_nlc.shape
    out = torch.empty((n, c, length), dtype=out_nlc.dtype)
    if residual is None:
        out.copy_(out_nlc.transpose(1, 2))
    else:
        torch.add(_flat(residual), out_nlc.transpose(1, 2), out=out)
    return out.view(n, c, *size)


def _tail_channels_last(
    y_ncl: Tensor,
    gate: Tensor,
    fc1: nn.Linear,
    grn: GRNwithNHWC,
    fc2_weight: Tensor,
    fc2_bias: Tensor | None,
    residual: Tensor | None,
    linear: LinearFn,
    size: tuple[int, int],
) -> Tensor:
    """The UniRepLKNet tail without autograd through oneDNN's linear in the ``(N·L, C)`` layout (see ``_onednn``).

    The SE gate is applied while the map is copied into that layout, the GELU runs inside the first matmul, the GRN
    scale in place on the hidden map; the result is added to the shortcut while copied back to NCHW.
    """
    n, c, length = y_ncl.shape
    y_nlc = torch.empty((n, length, c), dtype=y_ncl.dtype)
    torch.mul(y_ncl.transpose(1, 2), gate.unsqueeze(1), out=y_nlc)
    hidden = linear(y_nlc.view(n * length, c), fc1.weight, fc1.bias, True).view(
        n, length, fc1.out_features
    )  # (N, L, D)
    hidden.mul_(grn.scale_from_norms(_sum_of_squares(hidden, dim=1).sqrt_()).unsqueeze(1))
    out_nlc = linear(hidden.view(n * length, fc1.out_features), fc2_weight, fc2_bias, False).view(n, length, c)
    return _back_to_nchw(out_nlc, residual, size)


def unireplknet_block_tail(
    y: Tensor,
    gate: Tensor,
    fc1: nn.Linear,
    grn: GRNwithNHWC,
    fc2: nn.Linear,
    residual: Tensor | None = None,
) -> Tensor:
    """SE gating -> Linear1 -> GELU -> GRN -> Linear2 of a UniRepLKNet block, computed in the NCHW layout.

    Equals ``fc2(grn(GELU(fc1(y * gate))))`` in NCHW (the block's chain before its trailing BatchNorm in train form,
    which stays with the caller) within float rounding, forward and backward. The Linears run as ``W @ X`` on the
    ``(N, C, H·W)`` view of the map, so no permute copy is made; the SE and GRN gates are folded into the weights
    where that is cheaper; without autograd the GELU and the gates work in place on the hidden map.

    Args:
        y: ``(N, C, H, W)``, the output of the block's depthwise conv and norm.
        gate: ``(N, C)``, the SE gate of ``y`` (:meth:`unilk.layers.se.SEBlock.gate`).
        fc1: Linear ``C -> D``; ``grn``: the GRN over ``D`` (its ``beta`` may be None: deploy form).
        fc2: Linear ``D -> C`` (without bias in train form, where a BatchNorm follows).
        residual: ``(N, C, H, W)`` added to the result inside the last matmul (the block's shortcut), or None.

    Returns:
        ``(N, C, H, W)``, contiguous.
    """
    n, c, height, width = y.shape
    in_place = _inference(y, gate, fc1.weight, grn.gamma, grn.beta, fc2.weight, fc2.bias, residual)
    y_ncl = _flat(y)
    fc2_bias = fc2.bias
    if grn.beta is not None:
        # GRN's additive beta meets Linear2 as a constant input: it folds into the bias.
        folded = F.linear(grn.beta.view(1, -1), fc2.weight).view(-1)
        fc2_bias = folded if fc2_bias is None else fc2_bias + folded
    linear = _small_map_linear(y, fc1.out_features, in_place)
    if linear is not None:
        # Small maps (H·W <= D), where the gates cannot fold into the weights cheaply anyway: channels-last oneDNN.
        return _tail_channels_last(y_ncl, gate, fc1, grn, fc2.weight, fc2_bias, residual, linear, (height, width))
    buffer = _scratch(HIDDEN, (n, fc1.out_features, height * width), y, in_place)
    hidden = _gelu(_pointwise(fc1.weight, y_ncl, fc1.bias, gate, out=buffer), in_place)  # (N, D, L)
    grn_scale = grn.scale_from_norms(torch.linalg.vector_norm(hidden, dim=-1))  # (N, D): L2 over H, W as GRN does
    shortcut = None if residual is None else _flat(residual)
    out = _pointwise(fc2.weight, hidden, fc2_bias, grn_scale, in_place=in_place, accumulate=shortcut)  # (N, C, L)
    return out.view(n, c, height, width)


def _convnext_tail_channels_last(
    y_ncl: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    ln_eps: float,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    residual: Tensor | None,
    linear: LinearFn,
    size: tuple[int, int],
) -> Tensor:
    """SLaK's tail without autograd in the ``(N·L, C)`` layout: one copy in, ``F.layer_norm`` over the contiguous
    channels, oneDNN's linear with the GELU fused, and the shortcut added while copying back to NCHW."""
    n, c, length = y_ncl.shape
    y_nlc = y_ncl.transpose(1, 2).contiguous()
    normed = F.layer_norm(y_nlc, (c,), ln_weight, ln_bias, ln_eps).view(n * length, c)
    hidden = linear(normed, fc1_weight, fc1_bias, True)
    out_nlc = linear(hidden, fc2_weight, fc2_bias, False).view(n, length, c)
    return _back_to_nchw(out_nlc, residual, size)


def convnext_block_tail(
    y: Tensor,
    norm: nn.LayerNorm,
    fc1: nn.Linear,
    fc2: nn.Linear,
    gamma: Tensor | None,
    residual: Tensor | None = None,
) -> Tensor:
    """LayerNorm -> Linear1 -> GELU -> Linear2 -> layer scale of a ConvNeXt-style (SLaK) block, in the NCHW layout.

    Equals ``gamma * fc2(GELU(fc1(norm(y.permute(0, 2, 3, 1))))).permute(0, 3, 1, 2)`` (plus ``residual``) within
    float rounding, forward and backward. The LayerNorm's affine folds into Linear1 and the layer scale into Linear2;
    both Linears run as ``W @ X`` on the ``(N, C, H·W)`` view, so neither permute is copied.

    Args:
        y: ``(N, C, H, W)``, the large-kernel layer's output; a temporary that is overwritten when no autograd graph
            is recorded.
        norm: the LayerNorm over C (with its affine part); ``fc1``: Linear ``C -> D``; ``fc2``: Linear ``D -> C``.
        gamma: layer scale ``(C,)`` or None.
        residual: ``(N, C, H, W)`` added to the result inside the last matmul (the block's shortcut), or None.

    Returns:
        ``(N, C, H, W)``, contiguous.
    """
    ln_weight, ln_bias, ln_eps = norm.weight, norm.bias, norm.eps
    fc1_weight, fc1_bias, fc2_weight, fc2_bias = fc1.weight, fc1.bias, fc2.weight, fc2.bias
    n, c, height, width = y.shape
    in_place = _inference(y, ln_weight, ln_bias, fc1_weight, fc2_weight, fc2_bias, gamma, residual)
    y_ncl = _flat(y)
    linear = _small_map_linear(y, fc1_weight.shape[0], in_place)
    if linear is not None:
        # Small maps (H·W <= D): one (N·H·W)-row matmul runs nearer the machine's peak than N batched ones.
        w2, b2 = _layer_scaled(fc2_weight, fc2_bias, gamma)
        return _convnext_tail_channels_last(
            y_ncl, ln_weight, ln_bias, ln_eps, fc1_weight, fc1_bias, w2, b2, residual, linear, (height, width)
        )
    mean = y_ncl.mean(1, keepdim=True)
    centred = y_ncl.sub_(mean) if in_place else y_ncl - mean
    squares = torch.mul(centred, centred, out=_scratch(SQUARES, tuple(centred.shape), y, in_place))
    inv_std = torch.rsqrt(squares.mean(1, keepdim=True) + ln_eps)  # biased variance, as LayerNorm
    normed = centred.mul_(inv_std) if in_place else centred * inv_std
    # Per-channel affine parts go onto the weights (D·C products) when the map is larger (N·H·W > D), else the map.
    fold = n * height * width > fc1_weight.shape[0]
    if fold:
        w1, b1 = fc1_weight * ln_weight, torch.addmv(fc1_bias, fc1_weight, ln_bias)
    else:
        w1, b1 = fc1_weight, fc1_bias
        if in_place:
            normed = normed.mul_(ln_weight.view(1, -1, 1)).add_(ln_bias.view(1, -1, 1))
        else:
            normed = torch.addcmul(ln_bias.view(1, -1, 1), normed, ln_weight.view(1, -1, 1))
    buffer = _scratch(HIDDEN, (n, fc1_weight.shape[0], height * width), y, in_place)
    hidden = _gelu(_pointwise(w1, normed, b1, out=buffer), in_place)  # (N, D, L)
    shortcut = None if residual is None else _flat(residual)
    if gamma is None or fold:
        w2, b2 = _layer_scaled(fc2_weight, fc2_bias, gamma)
        return _pointwise(w2, hidden, b2, accumulate=shortcut).view(n, c, height, width)
    out = _pointwise(fc2_weight, hidden, fc2_bias)
    out = out.mul_(gamma.view(1, -1, 1)) if in_place else out * gamma.view(1, -1, 1)
    if shortcut is not None:
        out = out.add_(shortcut) if in_place else out + shortcut
    return out.view(n, c, height, width)
