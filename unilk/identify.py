"""Which registered model a bare state_dict belongs to, and in which form (training or deploy).

Official checkpoints and plain ``state_dict`` files name no architecture. Candidate models are built on the ``meta``
device (cheap even for the largest variants) and their keys and shapes compared with the file's; the classifier and
first conv are compared by name only, because their shapes follow ``num_classes`` and ``in_chans``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import CheckpointError

__all__ = ["infer_model_name", "detect_form", "classes_and_chans", "signature"]


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@dataclass(frozen=True)
class _Signature:
    """What a model's state_dict looks like, without its weights."""

    shapes: dict[str, tuple[int, ...]]
    classifier: str | None
    first_conv: str | None

    @property
    def loose_keys(self) -> tuple[str, ...]:
        """Keys whose shapes follow ``num_classes`` / ``in_chans``, compared by name only."""
        keys = [f"{self.classifier}.{p}" for p in ("weight", "bias")] if self.classifier else []
        return (*keys, f"{self.first_conv}.weight") if self.first_conv else tuple(keys)


@functools.cache
def signature(name: str, deploy: bool, kwargs_json: str = "{}") -> _Signature:
    """Build ``name`` on the meta device (cheap, no memory) and record its keys, shapes, classifier and first conv.

    ``kwargs_json`` holds the model keywords as JSON, so that the result can be cached.
    """
    from unilk.diagnostics.info import build_any_model

    kwargs = json.loads(kwargs_json)
    with torch.device("meta"):
        model = build_any_model(name, **kwargs, deploy=True) if deploy else build_any_model(name, **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return _Signature(_shapes(model), cfg.get("classifier") or None, cfg.get("first_conv") or None)


def _matches(state_dict: dict[str, Tensor], sig: _Signature) -> bool:
    keys = set(sig.shapes)
    # a headless trunk (num_classes=0, e.g. the trunk of a modal model) has every key but the classifier's
    headless = keys - {f"{sig.classifier}.weight", f"{sig.classifier}.bias"} if sig.classifier else keys
    if set(state_dict) not in (keys, headless):
        return False
    loose = sig.loose_keys
    return all(
        key in loose or tuple(state_dict[key].shape) == shape for key, shape in sig.shapes.items() if key in state_dict
    )


def detect_form(state_dict: dict[str, Tensor], name: str, kwargs_json: str = "{}") -> bool | None:
    """True if the state_dict is the deploy form of ``name``, False if the training form, None if neither."""
    from unilk.models.registry import is_model

    if _matches(state_dict, signature(name, False, kwargs_json)):
        return False
    # only unilk's families have a deploy form (timm models take no ``deploy`` keyword)
    if is_model(name) and _matches(state_dict, signature(name, True, kwargs_json)):
        return True
    return None


def _could_be(state_dict: dict[str, Tensor], name: str) -> bool:
    """Cheap pre-check without building: the cfg's first conv must be among the keys (it rules out other families)."""
    from unilk.models.registry import get_pretrained_cfg

    first_conv = get_pretrained_cfg(name).first_conv
    return not first_conv or f"{first_conv}.weight" in state_dict


def infer_model_name(state_dict: dict[str, Tensor], candidates: Sequence[str] | None = None) -> str:
    """Find the registered model whose state_dict (training or deploy form) has these keys and shapes.

    Models are built on the ``meta`` device, so this is cheap even for the largest variants. The classifier and first
    conv are compared by name only (their shapes follow ``num_classes`` and ``in_chans``).

    Args:
        state_dict: checkpoint tensors with the model's key names.
        candidates: names to try (default: every registered unilk model).

    Returns:
        The model name.

    Raises:
        CheckpointError: if no candidate, or more than one, matches.
    """
    import unilk.models  # noqa: F401  (registers the model families)
    from unilk.models.registry import list_models

    names = [name for name in (candidates if candidates is not None else list_models()) if _could_be(state_dict, name)]
    # the training form first: most files hold it, and then no candidate's deploy form needs building
    found = [name for name in names if _matches(state_dict, signature(name, False))]
    if not found:
        found = [name for name in names if detect_form(state_dict, name) is not None]
    if len(found) != 1:
        what = "no registered model" if not found else f"several models ({found})"
        raise CheckpointError(
            f"{what} has the checkpoint's {len(state_dict)} keys and shapes; pass the architecture with --model "
            "(e.g. --model unireplknet_s)"
        )
    return found[0]


def classes_and_chans(state_dict: dict[str, Tensor], sig: _Signature) -> dict[str, int]:
    """``num_classes`` (0 for a headless trunk) and ``in_chans`` of a state_dict that matches ``sig``."""
    found: dict[str, int] = {}
    head = f"{sig.classifier}.weight"
    if sig.classifier:
        found["num_classes"] = int(state_dict[head].shape[0]) if head in state_dict else 0
    stem = f"{sig.first_conv}.weight"
    if sig.first_conv and stem in state_dict:
        found["in_chans"] = int(state_dict[stem].shape[1])
    return found
