"""The per-layer fast-path switches: which layers have a fast form, and choosing it for a whole model."""

from torch import nn

from unilk.errors import ConfigError
from unilk.ops.lkconv import MODES

__all__ = ["set_fast_path", "set_lkconv_mode", "uses_fast_path"]


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


def set_lkconv_mode(module: nn.Module, mode: str) -> nn.Module:
    """Set the large-kernel convolution mode (:data:`unilk.ops.lkconv.MODES`) of every routed depthwise conv of
    ``module`` (those with an ``lkconv_mode`` attribute), in place.

    Raises:
        ConfigError: unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown large-kernel conv mode {mode!r}; expected one of {list(MODES)}")
    for layer in module.modules():
        if hasattr(layer, "lkconv_mode"):
            layer.lkconv_mode = mode
    return module


def uses_fast_path(module: nn.Module) -> bool:
    """Whether any layer of ``module`` is set to its fast form."""
    return any(getattr(layer, "fast_path", False) for layer in module.modules())
