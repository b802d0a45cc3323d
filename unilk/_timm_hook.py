"""Register unilk's models with timm as soon as timm is imported, without importing torch at ``import unilk``.

``import torch`` alone takes about 2 s, so ``import unilk`` stays light by importing nothing heavy. timm users still
expect ``timm.create_model("unireplknet_s")`` to work after ``import unilk``: if timm is already imported, the models
are registered at once; otherwise a one-shot import hook registers them right after timm finishes importing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["install"]


def _register() -> None:
    importlib.import_module("unilk.models")


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """A finder that wraps timm's loader so that unilk's models register right after timm is executed."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot: find the real spec, then step aside
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _register()

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Make sure unilk's models are in timm's registry whenever timm is (or gets) imported."""
    if "timm" in sys.modules:
        _register()
    elif not any(isinstance(finder, _RegisterAfterTimm) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())
