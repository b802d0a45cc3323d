"""unilk: one large-kernel ConvNet trunk (UniRepLKNet; SLaK and RepLKNet as siblings) for every modality.

The public API is loaded lazily so that ``import unilk`` stays fast (``import torch`` alone takes seconds):
attributes below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from unilk import _timm_hook
from unilk.errors import CheckpointError, ConfigError, InputError, UnilkError, WorkerDiedError
from unilk.version import __version__

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time these load lazily
    from unilk.encoding import Encoder, Maps, encode  # noqa: F401
    from unilk.hub import load_checkpoint  # noqa: F401
    from unilk.loading import load  # noqa: F401
    from unilk.models.registry import create_model, list_models, list_pretrained  # noqa: F401
    from unilk.reparam import reparameterize, verify_reparam  # noqa: F401

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "create_model": "unilk.models.registry",
    "list_models": "unilk.models.registry",
    "list_pretrained": "unilk.models.registry",
    "load_checkpoint": "unilk.hub",
    "load": "unilk.loading",
    "reparameterize": "unilk.reparam",
    "verify_reparam": "unilk.reparam",
    "encode": "unilk.encoding",
    "Encoder": "unilk.encoding",
    "Maps": "unilk.encoding",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "InputError",
    "UnilkError",
    "WorkerDiedError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unilk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


_timm_hook.install()
