"""The elementwise tail of a UniRepLKNet block, fused into the two pointwise matmuls where it pays.

A UniRepLKNet block after its depthwise conv (and norm) runs::

    y = x * SE(x)                       # per-(sample, channel) gate: one full pass over the map
    h = GELU(Linear1(permute(y)))       # NCHW -> NHWC permute forces a copy before the matmul
    g = (gamma * Nx(h) + 1) * h + beta  # GRN: a per-(sample, hidden channel) scale, one more full pass
    out = Linear2(g)

Both the SE gate and the GRN scale are per-sample diagonal matrices between a map and a Linear, so they can be moved
onto the Linear's weight: ``(x * s) @ W.T == x @ (W * s).T``. Scaling the weight costs ``N·C_in·C_out`` multiplies
instead of ``N·H·W·C_in``, which is cheaper whenever ``H·W > C_out``; one batched matmul per Linear then reads the map
straight from its NCHW layout (BLAS takes the transposed operand without a copy). ``beta`` of the GRN folds into the
second Linear's bias. Only the order of multiplications changes, so results match the unfused chain to float
rounding (about 1e-7 relative in float32).

The fused form is opt-in (``UNILK_FUSED_TAIL=1`` or ``with fused_tail():``): reordering the float operations moves
block outputs by about 1e-6 relative, and by default unilk reproduces the official implementation's numbers to 1e-5
absolute. It is never used in ``lkconv_mode("plain")`` nor while a model is exported or traced.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from unilk.ops.lkconv import _is_exporting, current_mode

__all__ = ["ENV_VAR", "fused_enabled", "fused_tail", "se_gate", "unireplknet_block_tail"]


ENV_VAR = "UNILK_FUSED_TAIL"

_override: contextvars.ContextVar[bool | None] = contextvars.ContextVar("unilk_fused_tail", default=None)


@contextlib.contextmanager
def fused_tail(enabled: bool = True) -> Iterator[None]:
    """Turn the fused block tail on (or off) inside the block, overriding ``$UNILK_FUSED_TAIL``."""
    token = _override.set(enabled)
    try:
        yield
    finally:
        _override.reset(token)


def fused_enabled() -> bool:
    """Whether blocks take the fused tail: when asked for (:func:`fused_tail`, ``UNILK_FUSED_TAIL=1``), never in
    ``lkconv_mode("plain")`` and never while exporting or tracing.

    Raises:
        ConfigError: ``UNILK_LKCONV`` holds an unknown mode.
    """
    if current_mode() == "plain" or _is_exporting():
        return False
    override = _override.get()
    return override if override is not None else os.environ.get(ENV_VAR, "0").strip() == "1"


def se_gate(x: Tensor, down_weight: Tensor, down_bias: Tensor, up_weight: Tensor, up_bias: Tensor) -> Tensor:
    """The squeeze-and-excitation gate of UniRepLKNet's SEBlock, without applying it.

    Args:
        x: ``(N, C, H, W)``.
        down_weight: ``(C_r, C, 1, 1)`` (or ``(C_r, C)``), ``down_bias``: ``(C_r,)``.
        up_weight: ``(C, C_r, 1, 1)`` (or ``(C, C_r)``), ``up_bias``: ``(C,)``.

    Returns:
        ``(N, C)`` gate in ``(0, 1)``: ``sigmoid(up(relu(down(mean_hw(x)))))``.
    """
    pooled = x.mean((2, 3))  # (N, C)
    hidden = F.relu(F.linear(pooled, down_weight.flatten(1), down_bias))
    return torch.sigmoid(F.linear(hidden, up_weight.flatten(1), up_bias))


def _scaled_linear(x_nlc: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor | None) -> Tensor:
    """``(x * scale[:, None, :]) @ weight.T + bias`` for ``x (N, L, C_in)``, scale ``(N, C_in)``: ``(N, L, C_out)``."""
    n, length, c_in = x_nlc.shape
    if scale is None:
        rhs = weight.t().expand(n, c_in, weight.shape[0])
    elif length > weight.shape[0]:
        rhs = scale.unsqueeze(-1) * weight.t()  # (N, C_in, C_out): scale the weight, not the map
    else:
        x_nlc, rhs = x_nlc * scale.unsqueeze(1), weight.t().expand(n, c_in, weight.shape[0])
    if bias is None:
        return torch.bmm(x_nlc, rhs)
    return torch.baddbmm(bias.view(1, 1, -1), x_nlc, rhs)


def unireplknet_block_tail(
    y: Tensor,
    se_down_weight: Tensor,
    se_down_bias: Tensor,
    se_up_weight: Tensor,
    se_up_bias: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    grn_gamma: Tensor,
    grn_beta: Tensor | None,
    fc2_weight: Tensor,
    fc2_bias: Tensor | None,
) -> Tensor:
    """SE gating -> Linear1 -> GELU -> GRN -> Linear2 of a UniRepLKNet block, with the gates folded into the matmuls.

    Equals ``pwconv2(act(pwconv1(se(y))))`` of the block (before its trailing NCHW BatchNorm in train form, which stays
    with the caller) within float rounding, forward and backward.

    Args:
        y: ``(N, C, H, W)``, the output of the block's depthwise conv and norm.
        se_down_weight: SE ``down`` weight ``(C_r, C, 1, 1)``; ``se_down_bias``: ``(C_r,)``.
        se_up_weight: SE ``up`` weight ``(C, C_r, 1, 1)``; ``se_up_bias``: ``(C,)``.
        fc1_weight: ``(D, C)``; ``fc1_bias``: ``(D,)`` (``pwconv1[1]``).
        grn_gamma: ``(1, 1, 1, D)``; ``grn_beta``: ``(1, 1, 1, D)`` or None (deploy form).
        fc2_weight: ``(C, D)``; ``fc2_bias``: ``(C,)`` or None (train form, where a BatchNorm follows).

    Returns:
        ``(N, C, H, W)`` (a channels-last strided view, like the block's own ``NHWCtoNCHW`` permute).
    """
    n, c, height, width = y.shape
    gate = se_gate(y, se_down_weight, se_down_bias, se_up_weight, se_up_bias)  # (N, C)
    y_nlc = y.flatten(2).transpose(1, 2)  # (N, HW, C), a strided view of the NCHW map
    hidden = F.gelu(_scaled_linear(y_nlc, fc1_weight, fc1_bias, gate))  # (N, HW, D)
    gx = torch.linalg.vector_norm(hidden, dim=1)  # (N, D): L2 over H, W as GRN does
    grn_scale = grn_gamma.view(1, -1) * (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)) + 1  # (N, D)
    if grn_beta is not None:
        # GRN's additive beta meets Linear2 as a constant input: it folds into the bias.
        folded = F.linear(grn_beta.view(1, -1), fc2_weight).view(-1)
        fc2_bias = folded if fc2_bias is None else fc2_bias + folded
    out = _scaled_linear(hidden, fc2_weight, fc2_bias, grn_scale)  # (N, HW, C)
    return out.transpose(1, 2).view(n, c, height, width)
