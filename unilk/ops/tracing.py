"""When fast paths step aside: while a graph is captured, every layer runs its plain PyTorch form."""

from __future__ import annotations

import torch

__all__ = ["plain_required"]

try:  # torch.fx keeps its tracing flag in a private module (is_fx_tracing also warns about torch.export)
    from torch.fx._symbolic_trace import is_fx_symbolic_tracing as _is_fx_tracing
except ImportError:  # pragma: no cover - older torch
    from torch.fx._symbolic_trace import is_fx_tracing as _is_fx_tracing


def plain_required() -> bool:
    """True while FX symbolic tracing, ``torch.jit.trace``, ``torch.compile`` or ``torch.export`` capture a graph.

    Fast paths (algorithm routing, fused tails) depend on tensor values, shapes and devices at run time; a captured
    graph must hold plain PyTorch ops instead. TorchScript scripting is handled by each layer's
    ``if torch.jit.is_scripting()`` branch, which the script compiler resolves statically.
    """
    return _is_fx_tracing() or torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
