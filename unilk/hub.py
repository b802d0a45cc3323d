"""Local checkpoint files: safe reading, head and stem adaptation, writing.

Pretrained cfgs and downloads are timm's (``unilk.models._builder``); this module reads the files users hold:

* checkpoints load with ``safetensors`` or ``torch.load(weights_only=True)``; ``{"model": ...}``,
  ``{"state_dict": ...}`` wrappers and DataParallel ``module.`` prefixes are removed;
* the classifier is dropped (and logged) when the model's ``num_classes`` differs from the checkpoint's;
* the first conv is adapted when ``in_chans`` differs (timm's ``adapt_input_conv``), and logged.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from unilk.errors import CheckpointError
from unilk.once import log_once

__all__ = [
    "file_sha256",
    "unwrap_state_dict",
    "refuse_nonfinite",
    "load_state_dict_file",
    "adapt_state_dict",
    "load_checkpoint",
    "save_state_dict",
]

logger = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unwrap_state_dict(obj: Any, path: str | Path = "checkpoint") -> dict[str, Any]:
    """Remove ``model``/``state_dict`` wrappers and ``module.`` prefixes (``path`` names the source in errors)."""
    import torch

    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "model_ema", "state_dict_ema"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            raise CheckpointError(
                f"{path}: expected a state_dict (or one wrapped in 'model'/'state_dict'), found keys "
                f"{sorted(obj)[:10]}; save the model's state_dict()"
            )
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if obj and all(key.startswith("module.") for key in obj):
        obj = {key[len("module.") :]: value for key, value in obj.items()}
    return dict(obj)


def refuse_nonfinite(state_dict: Mapping[str, Any], where: str) -> None:
    """Raise if a floating-point tensor holds NaN or inf (such weights give NaN outputs, never a working model).

    Raises:
        CheckpointError: naming the first tensors with non-finite values.
    """
    import torch

    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{where}: {len(bad)} tensor(s) hold NaN or inf values, e.g. {bad[:4]}; expected finite weights. "
            "Fix: use an intact checkpoint (a diverged training run writes such weights)"
        )


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file safely and return a plain state_dict.

    Args:
        path: ``.safetensors``, or a torch file (``.pth``/``.pt``/``.bin``) read with ``weights_only=True``.

    Returns:
        ``{key: tensor}`` on the CPU, unwrapped from ``model``/``state_dict`` and without ``module.`` prefixes.

    Raises:
        CheckpointError: when the file is missing or cannot be read safely.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass the path of a .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            # training scripts often store their argparse Namespace next to the weights: a plain attribute bag,
            # safe to allow; everything else that is not a tensor or container is refused by weights_only
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise various errors for corrupt or unsafe files
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {err}. unilk loads only safetensors or weights_only torch files; "
            "re-save the state_dict with torch.save(model.state_dict(), ...) or safetensors"
        ) from err
    state_dict = unwrap_state_dict(obj, path)
    refuse_nonfinite(state_dict, f"checkpoint {str(path)!r}")
    return state_dict


def adapt_state_dict(state_dict: dict[str, Any], model: Any) -> tuple[dict[str, Any], list[str]]:
    """Drop a classifier that does not fit and adapt the first conv to the model's ``in_chans``.

    Uses ``model.pretrained_cfg["classifier"]`` and ``["first_conv"]``; logs every change.

    Args:
        state_dict: checkpoint keys already mapped to the model's names.
        model: the target model.

    Returns:
        ``(state_dict, dropped)``: the adapted dict and the classifier keys that were dropped.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    target = model.state_dict()
    state_dict = dict(state_dict)
    dropped: list[str] = []
    classifier = cfg.get("classifier")
    for key in (f"{classifier}.weight", f"{classifier}.bias") if classifier else ():
        if key in state_dict and (key not in target or target[key].shape != state_dict[key].shape):
            shape, fits = tuple(state_dict[key].shape), tuple(target[key].shape) if key in target else "absent"
            message = "dropped %s %s from the checkpoint: the model's classifier is %s"
            log_once(logger, ("dropped", key, shape, fits), message, key, shape, fits, level=logging.INFO)
            dropped.append(key)
            del state_dict[key]
    first_conv = cfg.get("first_conv")
    key = f"{first_conv}.weight"
    if first_conv and key in state_dict and key in target and state_dict[key].shape[1] != target[key].shape[1]:
        in_chans = target[key].shape[1]
        was = state_dict[key].shape[1]
        message = "adapted %s from %d to %d input channels"
        log_once(logger, ("adapted", key, was, in_chans), message, key, was, in_chans, level=logging.INFO)
        from timm.models import adapt_input_conv

        state_dict[key] = adapt_input_conv(in_chans, state_dict[key])
    return state_dict, dropped


def load_checkpoint(
    model: Any,
    checkpoint_path: str | Path,
    filter_fn: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    strict: bool = True,
) -> Any:
    """Load a checkpoint into a built model, adapting its head and stem (:func:`unilk.loading.load_weights`).

    Args:
        model: the target ``nn.Module``.
        checkpoint_path: ``.pth``/``.pt``/``.bin`` (weights_only) or ``.safetensors``; also anything
            :func:`unilk.load` reads (a unilk export folder, a training checkpoint, an ``hf-hub:`` id).
        filter_fn: ``fn(state_dict, model) -> state_dict`` mapping foreign layouts to the model's keys.
        strict: every key must match, except a classifier dropped because ``num_classes`` differs.

    Returns:
        The model (loaded in place).

    Raises:
        CheckpointError: when keys or shapes do not match.
    """
    from unilk.loading import load_weights

    return load_weights(model, checkpoint_path, filter_fn=filter_fn, strict=strict)


def save_state_dict(state_dict: Mapping[str, Any], path: str | Path) -> Path:
    """Write a state_dict as ``.safetensors`` (by suffix) or as a plain torch file loadable with weights_only.

    Args:
        state_dict: ``{key: tensor}``.
        path: output file; its parent directories are created.

    Returns:
        The path written.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path
