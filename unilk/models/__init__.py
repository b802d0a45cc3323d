"""Model families. Importing this package registers every model with timm (``timm.list_models(module=...)``)."""

from __future__ import annotations

from unilk.models import replknet, slak, unireplknet
from unilk.models.registry import create_model, list_models, list_pretrained
from unilk.models.replknet import RepLKNet
from unilk.models.slak import SLaK
from unilk.models.unireplknet import UniRepLKNet

__all__ = [
    "RepLKNet",
    "SLaK",
    "UniRepLKNet",
    "create_model",
    "list_models",
    "list_pretrained",
    "replknet",
    "slak",
    "unireplknet",
]
