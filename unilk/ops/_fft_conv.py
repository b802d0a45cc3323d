"""Exact depthwise "same" convolution (stride 1, odd kernel) and its gradients by FFT.

With ``p = k // 2`` per axis, the forward output is ``y[h] = sum_t w[t + p] x[h + t]`` for ``t`` in ``[-p, p]``: a
cross-correlation with a kernel centred at 0. A circular FFT of length ``L >= H + p`` never wraps a tap that can touch
the input onto a real position, so ``L = H + p`` (rounded up to a 2·3·5·7-smooth length) is enough for all three
products (forward, input gradient, weight gradient) instead of the usual ``H + k - 1``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fft_lengths", "fft_depthwise_forward", "fft_depthwise_backward"]


@functools.lru_cache(maxsize=512)
def _smooth_length(n: int) -> int:
    """Smallest integer >= n whose prime factors are all in {2, 3, 5, 7} (fast FFT sizes)."""
    m = n
    while True:
        rest = m
        for prime in (2, 3, 5, 7):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return m
        m += 1


def fft_lengths(height: int, width: int, k_h: int, k_w: int) -> tuple[int, int]:
    """FFT lengths ``(L_h, L_w)`` that make the circular products equal to the zero-padded ones."""
    return _smooth_length(height + k_h // 2), _smooth_length(width + k_w // 2)


def _kernel_spectrum(weight: Tensor, lengths: tuple[int, int]) -> Tensor:
    """rfft2 of the kernel ``(C, 1, k_h, k_w)`` centred at index 0 (negative taps wrap): ``(C, L_h, L_w//2+1)``."""
    k_h, k_w = weight.shape[-2:]
    l_h, l_w = lengths
    placed = F.pad(weight[:, 0], (0, l_w - k_w, 0, l_h - k_h)).roll(shifts=(-(k_h // 2), -(k_w // 2)), dims=(1, 2))
    return torch.fft.rfft2(placed)


def fft_depthwise_forward(x: Tensor, weight: Tensor) -> Tensor:
    """Depthwise same convolution by FFT.

    Args:
        x: ``(N, C, H, W)``, float32 or float64.
        weight: ``(C, 1, k_h, k_w)``, odd sizes.

    Returns:
        ``(N, C, H, W)``, contiguous.
    """
    height, width = x.shape[-2:]
    lengths = fft_lengths(height, width, *weight.shape[-2:])
    spectrum = torch.fft.rfft2(x, s=lengths) * _kernel_spectrum(weight, lengths).conj()
    return torch.fft.irfft2(spectrum, s=lengths)[..., :height, :width].contiguous()


def fft_depthwise_backward(
    x: Tensor, weight: Tensor, grad_out: Tensor, need_input: bool, need_weight: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Input and weight gradients of :func:`fft_depthwise_forward`, sharing one transform of ``grad_out``.

    Args:
        x: the forward input ``(N, C, H, W)``.
        weight: ``(C, 1, k_h, k_w)``.
        grad_out: ``(N, C, H, W)``.
        need_input: compute the input gradient.
        need_weight: compute the weight gradient.

    Returns:
        ``(grad_x (N, C, H, W) or None, grad_weight (C, 1, k_h, k_w) or None)``.
    """
    height, width = x.shape[-2:]
    k_h, k_w = weight.shape[-2:]
    lengths = fft_lengths(height, width, k_h, k_w)
    grad_spec = torch.fft.rfft2(grad_out, s=lengths)
    grad_x = grad_w = None
    if need_input:
        # grad_x[m] = sum_h grad_out[h] w_centred[m - h]: a true convolution, so no conjugate.
        grad_x_full = torch.fft.irfft2(grad_spec * _kernel_spectrum(weight, lengths), s=lengths)
        grad_x = grad_x_full[..., :height, :width].contiguous()
    if need_weight:
        # c[d] = sum_{n,h} grad_out[n, h] x[n, h + d]; tap i of the kernel is c[i - p], stored at (i - p) mod L.
        cross = (torch.fft.rfft2(x, s=lengths) * grad_spec.conj()).sum(0)
        corr = torch.fft.irfft2(cross, s=lengths).roll(shifts=(k_h // 2, k_w // 2), dims=(1, 2))
        grad_w = corr[:, :k_h, :k_w].unsqueeze(1).contiguous()
    return grad_x, grad_w
