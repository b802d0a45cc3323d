"""Fine-tune recipes (YAML), shipped as package data: ``<modality>/<dataset>.yaml``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["recipe_root", "list_recipes"]


def recipe_root() -> Path:
    """The directory holding the shipped recipe files (works for editable and regular installs)."""
    return Path(str(files(__name__)))


def list_recipes() -> list[str]:
    """Names of the shipped recipes, as ``<modality>/<dataset>`` without the ``.yaml`` suffix."""
    root = recipe_root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))
