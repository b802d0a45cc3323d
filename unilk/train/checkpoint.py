"""Training checkpoints: atomic writes, ``weights_only`` loading, and the RNG state needed for exact resume.

A checkpoint is a dict of tensors and plain containers only, so ``torch.load(weights_only=True)`` reads it::

    format      "unilk-train-1"
    model       state_dict of the model (not the DDP wrapper)
    arch        {"name": registered arch, "kwargs": constructor kwargs, "modality", "task", "num_classes", ...}
    adapter     adapter config dict (``AdapterConfig.to_dict()``), or {}
    labels      label names (list of str), or []
    recipe      ``Recipe.to_dict()``
    metrics     last evaluation metrics {name: float}
    progress    {"step", "epoch", "batch_in_epoch", "best"}
    sparsity    ``DynamicSparsity.state_dict()`` (masks, step count, generator state, config): sparse runs only
    optimizer, ema, scaler, rng     training state (absent in exported weights)
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilk.errors import CheckpointError

__all__ = ["FORMAT", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

FORMAT = "unilk-train-1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same directory, fsync, rename).

    A crash during the write leaves the previous file intact.

    Args:
        path: destination file.
        payload: tensors and plain containers (dict, list, tuple, str, int, float, bool, None).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save({"format": FORMAT, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)`` on CPU.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a unilk training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: no such file; expected a .pt written by `unilk train`")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(f"checkpoint {str(path)!r}: cannot be read ({err}); it may be truncated") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"checkpoint {str(path)!r}: format {found!r}, expected {FORMAT!r}")
    return data


def capture_rng() -> dict[str, Any]:
    """The Python, NumPy, torch CPU and CUDA generator states, as tensors and plain values."""
    version, state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the generator states captured by :func:`capture_rng`."""
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
