"""The per-layer fast-path switch: which layers have a fast form, and turning it on or off for a whole model."""

from torch import nn

__all__ = ["set_fast_path", "uses_fast_path"]


def set_fast_path(module: nn.Module, enabled: bool) -> nn.Module:
    """Choose the fast forms (``True``, the default) or the plain bit-reference build (``False``) for every layer of
    ``module`` that has one (those with a ``fast_path`` attribute), in place.

    Args:
        module: a model or layer.
        enabled: take the fast forms.

    Returns:
        ``module``.
    """
    for layer in module.modules():
        if hasattr(layer, "fast_path"):
            layer.fast_path = bool(enabled)
    return module


def uses_fast_path(module: nn.Module) -> bool:
    """Whether any layer of ``module`` is set to its fast form."""
    return any(getattr(layer, "fast_path", False) for layer in module.modules())
