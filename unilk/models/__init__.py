"""Model families and the registry. Importing this package registers every model, in unilk's registry and timm's."""

from __future__ import annotations

from unilk.models import replknet, slak, unireplknet
from unilk.models.registry import build_model, create_model, list_models, list_pretrained, register_model
from unilk.models.unireplknet import UniRepLKNet

__all__ = [
    "UniRepLKNet",
    "build_model",
    "create_model",
    "list_models",
    "list_pretrained",
    "register_model",
    "replknet",
    "slak",
    "unireplknet",
]
