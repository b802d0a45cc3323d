"""oneDNN's fp32 linear with a fused GELU, when this PyTorch build has it.

PyTorch runs fp32 ``F.linear`` on CPU through MKL; on the AMD machines this project measures on, oneDNN's matmul is
1.2-2x faster for the pointwise layers of UniRepLKNet's later stages (e.g. C384 on 14x14 maps at batch 32: 78 ms for
Linear + GELU + Linear against 110-150 ms) and applies the exact GELU in the same pass. The op,
``torch.ops.mkldnn._linear_pointwise``, is the one ``torch.compile`` uses on CPU; it is not a public API, so it is
probed once (present, and equal to ``F.gelu(F.linear(...))`` within 1e-5 relative on a small problem) and otherwise
not used.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["onednn_linear"]

logger = logging.getLogger(__name__)

LinearFn = Callable[[Tensor, Tensor, Tensor | None, bool], Tensor]


def _call(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool) -> Tensor:
    """``F.linear(x, weight, bias)`` (then exact GELU when ``gelu``) for a 2-D float32 CPU ``x``."""
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@functools.cache
def onednn_linear() -> LinearFn | None:
    """The oneDNN linear (``fn(x_2d, weight, bias, gelu)``) if this build has a working one, else None."""
    if not torch.backends.mkldnn.is_available():
        return None
    gen = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(shape, generator=gen) for shape in ((37, 24), (40, 24), (40,)))
    try:
        with torch.no_grad():
            got = _call(x, weight, bias, True)
    except (AttributeError, RuntimeError, TypeError) as err:
        logger.debug("oneDNN linear unavailable (%s); using torch.matmul", err)
        return None
    want = F.gelu(F.linear(x, weight, bias))
    if got.shape != want.shape or ((got - want).abs().max() / want.abs().max()).item() > 1e-5:
        logger.debug("oneDNN linear disagrees with F.linear; using torch.matmul")
        return None
    return _call
