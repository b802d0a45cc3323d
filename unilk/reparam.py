"""Turn any unilk model into its exact inference form, and prove that the two forms agree.

Every module with a training-time structure has ``reparameterize()`` (one verb, idempotent, in place);
``reparameterize`` walks a model and calls it; ``verify_reparam`` compares both forms on an input.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import UnilkError

__all__ = ["reparameterize", "verify_reparam"]

logger = logging.getLogger(__name__)


def reparameterize(model: nn.Module, inplace: bool = True) -> nn.Module:
    """Replace every re-parameterizable module by its inference form.

    Args:
        model: any module; every submodule (and the module itself) that has ``reparameterize()`` is converted.
        inplace: convert ``model`` itself; otherwise a converted deep copy is returned and ``model`` is untouched.

    Returns:
        The converted model (in eval mode: BatchNorm running statistics are what gets folded).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    count = 0
    for module in list(model.modules()):
        method = getattr(module, "reparameterize", None)
        if callable(method):
            method()
            count += 1
    logger.info("re-parameterized %d module(s) of %s", count, type(model).__name__)
    return model


def _flatten(output: Tensor | list | tuple | dict) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for value in output.values() for t in _flatten(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in _flatten(value)]
    raise UnilkError(f"verify_reparam: cannot compare a model output of type {type(output).__name__}")


@torch.no_grad()
def verify_reparam(model: nn.Module, x: Tensor, atol: float | None = None) -> float:
    """Compare a model with its re-parameterized form on one input (neither ``model`` nor its mode is changed).

    Args:
        model: the training-form model (an already converted model gives 0).
        x: an input batch, e.g. ``(N, C, H, W)``.
        atol: if given, raise when the difference exceeds it (1e-5 suits fp32, 1e-10 fp64).

    Returns:
        The maximum absolute difference between the eval-mode outputs of both forms.

    Raises:
        UnilkError: if ``atol`` is given and exceeded, or the output shapes differ.
    """
    reference = copy.deepcopy(model).eval()
    converted = reparameterize(copy.deepcopy(model).eval())
    before, after = _flatten(reference(x)), _flatten(converted(x))
    if len(before) != len(after) or any(a.shape != b.shape for a, b in zip(before, after)):
        raise UnilkError("verify_reparam: the re-parameterized model returns outputs of other shapes")
    diff = max(((a - b).abs().max().item() for a, b in zip(before, after)), default=0.0)
    if atol is not None and diff > atol:
        raise UnilkError(
            f"verify_reparam: re-parameterized outputs differ by {diff:.3g} > atol={atol:g}; a module's "
            "reparameterize() is not exact (in fp32 expect about 1e-6, in fp64 about 1e-15)"
        )
    return diff
