"""Which exact algorithm the large-kernel depthwise convolution runs, per direction, from measured rules.

The rules come from ``benchmarks/bench_lkconv.py`` on CPU (torch 2.14.1, oneDNN, 2 threads, float32; see
docs/performance.md). What they encode:

- Forward and input gradient: oneDNN's NCHW depthwise kernel is fast while the kernel is at most 13 taps wide,
  whatever its height (13x13, 51x5 and 17x5 are fast; 15x15, 5x17 and 5x51 are 5-50x slower), and there it beats
  channels-last by 1.2-3x. Wider kernels go channels-last. FFT only matches channels-last for dense kernels around
  51x51 and above on large maps.
- Weight gradient: PyTorch's depthwise weight gradient runs at a few GFLOP/s in both layouts. The same sums are one
  grouped convolution that oneDNN runs fast: for every (sample, channel) the padded input correlated with that
  channel's output gradient as the kernel, summed over the batch (``corr``). It beats PyTorch's gradient 2-20x and
  FFT 1.1-10x everywhere except the widest dense kernels on large maps (RepLKNet's 31x31 on 56x56, 29x29 on 28x28),
  where FFT's cost, independent of the kernel size, wins.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

from unilk.errors import ConfigError

__all__ = ["NCHW_MAX_WIDTH", "Plan", "choose_plan"]

logger = logging.getLogger(__name__)

# Kernel width (after cropping) above which NCHW collapses and channels-last wins for the forward direction.
NCHW_MAX_WIDTH = 13
# Kernel area from which the forward FFT is at least as fast as channels-last (on maps of at least _FFT_MIN_MAP).
_FFT_FORWARD_MIN_AREA = 49 * 49
_FFT_MIN_MAP = 28 * 28
# Weight gradient: FFT from this many taps on maps of at least this many positions, else the grouped correlation.
_FFT_WEIGHT_MIN_AREA = 29 * 29
_FFT_WEIGHT_MIN_MAP = 28 * 28


@dataclasses.dataclass(frozen=True)
class Plan:
    """Algorithms for one convolution shape.

    Attributes:
        forward: ``"nchw"``, ``"channels_last"`` or ``"fft"``.
        input_grad: same choices, for the input gradient (a convolution with the flipped kernel, same shape).
        weight_grad: ``"nchw"``, ``"channels_last"`` (PyTorch's own gradient in that layout), ``"fft"`` or ``"corr"``
            (one grouped correlation of the input with the output gradient).
    """

    forward: str
    input_grad: str
    weight_grad: str


def _auto_direct(height: int, width: int, k_h: int, k_w: int) -> str:
    """Rule for the forward / input-gradient convolution."""
    area = k_h * k_w
    if area >= _FFT_FORWARD_MIN_AREA and height * width >= _FFT_MIN_MAP:
        return "fft"
    if k_w > NCHW_MAX_WIDTH:
        return "channels_last"
    return "nchw"


def _auto_weight_grad(height: int, width: int, k_h: int, k_w: int) -> str:
    """Rule for the weight gradient."""
    return "fft" if k_h * k_w >= _FFT_WEIGHT_MIN_AREA and height * width >= _FFT_WEIGHT_MIN_MAP else "corr"


@functools.lru_cache(maxsize=1024)
def choose_plan(mode: str, batch: int, channels: int, height: int, width: int, k_h: int, k_w: int) -> Plan:
    """The plan for a (cropped) kernel ``k_h x k_w`` on ``batch x channels x height x width`` inputs.

    Args:
        mode: ``"auto"`` (rules) or a forced algorithm ``"nchw"``, ``"channels_last"`` or ``"fft"``.
        batch: N.
        channels: C.
        height: H.
        width: W.
        k_h: kernel height after cropping.
        k_w: kernel width after cropping.

    Returns:
        The :class:`Plan`.

    Raises:
        ConfigError: unknown mode.
    """
    if mode == "auto":
        direct = _auto_direct(height, width, k_h, k_w)
        plan = Plan(direct, direct, _auto_weight_grad(height, width, k_h, k_w))
    elif mode in ("nchw", "channels_last", "fft"):
        plan = Plan(mode, mode, mode)
    else:
        raise ConfigError(f"choose_plan: mode {mode!r} has no plan; expected 'auto', 'nchw', 'channels_last' or 'fft'")
    logger.debug(
        "lkconv plan for N=%d C=%d %dx%d k=%dx%d (%s): %s", batch, channels, height, width, k_h, k_w, mode, plan
    )
    return plan
