"""A small cached autotuner: the first call of a key times every exact candidate once and keeps the fastest.

``auto`` on CUDA uses it to choose the large-kernel convolution's algorithm per direction (PyTorch's native NCHW
kernel, cuDNN through channels-last, FFT, Triton): which one wins depends on the GPU, the cuDNN release, the dtype,
the layout and the shape, and no measured rule exists for them yet. Each candidate runs once untimed (which also
compiles Triton kernels and warms cuDNN's plan cache), its result is checked against the first candidate's (the
reference, PyTorch's own kernel) and only then timed; a candidate that raises or disagrees is dropped with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping

import torch
from torch import Tensor

__all__ = ["Tuner", "synchronized_timer", "tolerance"]

logger = logging.getLogger(__name__)

Timer = Callable[[str, Callable[[], object]], float]


def tolerance(dtype: torch.dtype, tf32: bool = False) -> float:
    """Largest relative difference (to the reference's largest value) two exact algorithms may show in ``dtype``.

    ``tf32``: float32 convolutions may run in TensorFloat-32 (``torch.backends.cudnn.allow_tf32``, on by default), which
    keeps 10 mantissa bits, so cuDNN's results differ from full-precision kernels by up to about 1e-3.
    """
    if dtype == torch.float64:
        return 1e-9
    if dtype == torch.float32:
        return 5e-3 if tf32 else 1e-4
    if dtype in (torch.float16, torch.bfloat16):
        return 3e-2
    raise ValueError(f"tolerance: no tolerance for dtype {dtype}; expected a floating-point dtype")


def synchronized_timer(rounds: int = 3, calls: int = 3, slow_s: float = 5e-3) -> Timer:
    """A timer that runs ``calls`` calls between device synchronizations, ``rounds`` times, and keeps the fastest.

    A candidate whose first timed call takes at least ``slow_s`` is timed by that call alone: its time is well above
    the noise, and repeating a slow candidate (PyTorch's native 31x31 weight gradient takes seconds at batch 128)
    would only make the first batch slower.

    Returns:
        ``timer(name, fn) -> seconds per call``.
    """

    def timer(name: str, fn: Callable[[], object]) -> float:
        _synchronize()
        start = time.perf_counter()
        fn()
        _synchronize()
        best = time.perf_counter() - start
        if best >= slow_s:
            return best
        for _ in range(rounds):
            _synchronize()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            _synchronize()
            best = min(best, (time.perf_counter() - start) / calls)
        return best

    return timer


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _as_tensors(result: object) -> tuple[Tensor, ...]:
    if isinstance(result, Tensor):
        return (result,)
    if isinstance(result, tuple) and all(isinstance(r, Tensor) for r in result):
        return result
    raise TypeError(f"Tuner: a candidate returned {type(result).__name__}; expected a tensor or a tuple of tensors")


def _relative_difference(result: object, reference: object) -> float:
    worst = 0.0
    for got, want in zip(_as_tensors(result), _as_tensors(reference), strict=True):
        if got.shape != want.shape:
            return float("inf")
        want64, got64 = want.double(), got.double()
        scale = want64.abs().max().clamp_min(1e-30)
        worst = max(worst, ((got64 - want64).abs().max() / scale).item())
    return worst


class Tuner:
    """Chooses, once per key, the fastest candidate that agrees with the reference; then answers from its cache.

    Args:
        timer: ``timer(name, fn) -> seconds`` (default: :func:`synchronized_timer`).
        max_entries: the cache is cleared when it reaches this size (a stream of new shapes must not grow it forever).
    """

    def __init__(self, timer: Timer | None = None, max_entries: int = 4096) -> None:
        self._timer = timer or synchronized_timer()
        self._max_entries = max_entries
        self._choices: dict[Hashable, str] = {}

    def cached(self, key: Hashable) -> str | None:
        """The choice made for ``key``, or None before the first :meth:`choose`."""
        return self._choices.get(key)

    def choose(self, key: Hashable, candidates: Mapping[str, Callable[[], object]], rel_tolerance: float) -> str:
        """The fastest exact candidate for ``key`` (timed on the first call, cached afterwards).

        Args:
            key: what the choice depends on (direction, shapes, dtype, layout, device).
            candidates: name -> zero-argument callable returning a tensor or tuple of tensors; the first one is the
                reference: it must run, and the others must agree with it within ``rel_tolerance``.
            rel_tolerance: largest allowed difference relative to the reference's largest absolute value.

        Returns:
            The chosen candidate's name.

        Raises:
            ValueError: no candidates.
        """
        choice = self._choices.get(key)
        if choice is not None:
            return choice
        if not candidates:
            raise ValueError(f"Tuner.choose: no candidates for {key!r}")
        names = list(candidates)
        reference = candidates[names[0]]()
        timings = {names[0]: self._timer(names[0], candidates[names[0]])}
        for name in names[1:]:
            try:
                difference = _relative_difference(candidates[name](), reference)
            except Exception as err:  # a candidate that cannot run this shape (or fails to compile) is skipped
                logger.warning("lkconv autotune %r: candidate %s failed and is skipped: %s", key, name, err)
                continue
            if difference > rel_tolerance:
                logger.warning(
                    "lkconv autotune %r: candidate %s differs from %s by %.2e (> %.0e) and is skipped",
                    key, name, names[0], difference, rel_tolerance,
                )  # fmt: skip
                continue
            timings[name] = self._timer(name, candidates[name])
        choice = min(timings, key=timings.__getitem__)
        logger.info(
            "lkconv autotune %r: %s (%s)", key, choice, ", ".join(f"{n} {t * 1e3:.3f} ms" for n, t in timings.items())
        )
        if len(self._choices) >= self._max_entries:
            self._choices.clear()
        self._choices[key] = choice
        return choice
