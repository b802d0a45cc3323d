"""Pretrained cfgs and checkpoint loading: Hugging Face or local files, .pth or .safetensors, head and stem adaptation.

A ``PretrainedCfg`` binds a checkpoint (Hugging Face repo + file name, sha256) to what the weights need (input size,
mean/std, number of classes) and to where the model's first conv and classifier are, so that loading can adapt them:

* the classifier is dropped (and logged) when the model's ``num_classes`` differs from the checkpoint's;
* the first conv is adapted when ``in_chans`` differs from 3: summed over RGB for 1 channel, tiled and rescaled by
  ``3 / in_chans`` otherwise (timm's rule), and logged.

Checkpoints load with ``safetensors`` or ``torch.load(weights_only=True)``; ``{"model": ...}``, ``{"state_dict": ...}``
wrappers and DataParallel ``module.`` prefixes are removed. Downloads go through ``huggingface_hub``;
``HF_HUB_OFFLINE=1`` (read at call time, not only at import) restricts them to the local cache.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from unilk.errors import CheckpointError, unknown_keys_error

__all__ = [
    "PretrainedCfg",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "download_pretrained",
    "file_sha256",
    "load_state_dict_file",
    "adapt_input_conv",
    "adapt_state_dict",
    "load_checkpoint",
    "load_pretrained",
    "save_state_dict",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """What one released checkpoint is and what it expects (timm's ``PretrainedCfg`` fields, plus unilk's own).

    Attributes:
        architecture: registered model name (filled in at registration).
        tag: pretrained tag (``"in22k_ft_in1k"``), empty for an architecture's untagged default.
        hf_hub_id: Hugging Face repo holding the file, e.g. ``"DingXiaoH/UniRepLKNet"``.
        hf_hub_filename: file name in that repo (the official file name).
        hf_hub_revision: branch, tag or commit of the repo; None for the default branch.
        url: a plain download URL (informational; unilk downloads through the hub).
        sha256: hex digest of the file, checked after download when given.
        num_classes: classes of the checkpoint's head (1000, 21841, ...).
        input_size: ``(C, H, W)`` the weights were trained or fine-tuned at.
        test_input_size: evaluation size when it differs from ``input_size``.
        pool_size: last-stage map size at ``input_size``.
        crop_pct: centre-crop fraction at evaluation (1.0 means resize without crop).
        crop_mode: ``"center"`` or ``"squash"``.
        interpolation: resize interpolation.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        first_conv: module name of the first convolution (adapted when ``in_chans`` differs).
        classifier: module name of the classifier (dropped when ``num_classes`` differs).
        license: licence of the weights.
        num_params: parameter count of the model the weights load into (tested).
        paper_ids: arXiv ids.
        origin_url: official repository.
        notes: free text.
        adapter: the modality adapter config the weights expect (``{"modality": ..., **fields}``), if any.
    """

    architecture: str = ""
    tag: str = ""
    hf_hub_id: str | None = None
    hf_hub_filename: str | None = None
    hf_hub_revision: str | None = None
    url: str | None = None
    sha256: str | None = None
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    test_input_size: tuple[int, int, int] | None = None
    pool_size: tuple[int, int] = (7, 7)
    crop_pct: float = 0.875
    crop_mode: str = "center"
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    first_conv: str = ""
    classifier: str = "head"
    license: str | None = None
    num_params: int | None = None
    paper_ids: str | None = None
    origin_url: str | None = None
    notes: str | None = None
    adapter: Mapping[str, Any] | None = None

    @property
    def has_weights(self) -> bool:
        """Whether the cfg points at a downloadable checkpoint."""
        return bool(self.hf_hub_id and self.hf_hub_filename)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PretrainedCfg:
        """Build from a dict, rejecting unknown keys.

        Raises:
            ConfigError: for a key that is not a field, listing the valid ones.
        """
        valid = {f.name for f in fields(cls)}
        unknown = set(values) - valid
        if unknown:
            raise unknown_keys_error("PretrainedCfg", unknown, valid)
        return cls(**values)

    def updated(self, values: Mapping[str, Any]) -> PretrainedCfg:
        """A copy with some fields replaced (unknown keys raise ConfigError)."""
        return replace(self, **self.from_dict({**self.to_dict(), **values}).to_dict())

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (what ``model.pretrained_cfg`` holds, as timm's helpers expect)."""
        return asdict(self)

    def to_timm_dict(self) -> dict[str, Any]:
        """The fields timm's ``PretrainedCfg`` knows, for registering the cfg with timm."""
        from timm.models import PretrainedCfg as TimmPretrainedCfg

        known = {f.name for f in fields(TimmPretrainedCfg)} - {"architecture", "tag"}
        return {name: value for name, value in self.to_dict().items() if name in known}


def _offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once at its import; read it again so a later setting is honoured too
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_pretrained(cfg: PretrainedCfg, cache_dir: str | Path | None = None) -> Path:
    """Fetch a cfg's checkpoint through huggingface_hub (or find it in the cache when offline).

    Args:
        cfg: a cfg with ``hf_hub_id`` and ``hf_hub_filename``.
        cache_dir: Hugging Face hub cache directory (default: ``HF_HUB_CACHE``).

    Returns:
        Local path of the file.

    Raises:
        CheckpointError: when the cfg has no weights, the file cannot be fetched (or is not cached in offline mode),
            or its sha256 does not match.
    """
    name = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    if not cfg.has_weights:
        raise CheckpointError(
            f"{name!r} has no released weights (hf_hub_id={cfg.hf_hub_id!r}, hf_hub_filename={cfg.hf_hub_filename!r}); "
            "use pretrained=False, pass checkpoint_path=, or pick a tag from unilk.models.registry.list_pretrained()"
        )
    from huggingface_hub import hf_hub_download

    offline = _offline()
    try:
        path = Path(
            hf_hub_download(
                repo_id=cfg.hf_hub_id,
                filename=cfg.hf_hub_filename,
                revision=cfg.hf_hub_revision,
                cache_dir=cache_dir,
                local_files_only=offline,
            )
        )
    except Exception as err:  # huggingface_hub raises many types (network, 404, not cached); report them all alike
        where = f"{cfg.hf_hub_id}/{cfg.hf_hub_filename}"
        hint = (
            "HF_HUB_OFFLINE is set, so only the local cache is searched: download the file once online, or pass "
            "checkpoint_path="
            if offline
            else "check the network, or download the file yourself and pass checkpoint_path="
        )
        raise CheckpointError(f"could not fetch {where} for {name!r} (cache_dir={cache_dir}): {err}; {hint}") from err
    if cfg.sha256 and (digest := file_sha256(path)) != cfg.sha256:
        raise CheckpointError(f"{path} has sha256 {digest}, expected {cfg.sha256}; delete it and download again")
    return path


def _unwrap(obj: Any, path: Path) -> dict[str, Any]:
    """Remove ``model``/``state_dict`` wrappers and ``module.`` prefixes."""
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
    return _unwrap(obj, path)


def adapt_input_conv(weight: Any, in_chans: int) -> Any:
    """Adapt an RGB first-conv kernel to another number of input channels (timm's rule).

    Args:
        weight: ``(O, 3, k_h, k_w)``.
        in_chans: channels of the new input.

    Returns:
        ``(O, in_chans, k_h, k_w)``: the RGB sum for 1 channel; otherwise the kernel tiled over channels, truncated
        and scaled by ``3 / in_chans`` so that the response to a constant input is kept.

    Raises:
        CheckpointError: if the kernel is not a 4-D conv kernel with 3 input channels.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise CheckpointError(f"can adapt only a (O, 3, k, k) first-conv kernel, got shape {tuple(weight.shape)}")
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3 / in_chans)


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
            logger.info(
                "dropped %s %s from the checkpoint: the model's classifier is %s",
                key,
                tuple(state_dict[key].shape),
                tuple(target[key].shape) if key in target else "absent",
            )
            dropped.append(key)
            del state_dict[key]
    first_conv = cfg.get("first_conv")
    key = f"{first_conv}.weight"
    if first_conv and key in state_dict and key in target and state_dict[key].shape[1] != target[key].shape[1]:
        in_chans = target[key].shape[1]
        logger.info("adapted %s from %d to %d input channels", key, state_dict[key].shape[1], in_chans)
        state_dict[key] = adapt_input_conv(state_dict[key], in_chans)
    return state_dict, dropped


def load_checkpoint(
    model: Any,
    checkpoint_path: str | Path,
    filter_fn: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    strict: bool = True,
) -> Any:
    """Load a local checkpoint into a model, adapting its head and stem.

    Args:
        model: the target ``nn.Module``.
        checkpoint_path: ``.pth``/``.pt``/``.bin`` (weights_only) or ``.safetensors``.
        filter_fn: ``fn(state_dict, model) -> state_dict`` mapping foreign layouts to the model's keys.
        strict: every key must match, except a classifier dropped because ``num_classes`` differs.

    Returns:
        The model (loaded in place).

    Raises:
        CheckpointError: when keys or shapes do not match.
    """
    state_dict = load_state_dict_file(checkpoint_path)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    state_dict, dropped = adapt_state_dict(state_dict, model)
    target = model.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}"
        for key, value in state_dict.items()
        if key in target and target[key].shape != value.shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{checkpoint_path}: {len(mismatched)} shape mismatch(es), e.g. {mismatched[:3]}; build the model with "
            "the checkpoint's configuration (depths, dims, kernel_sizes, deploy)"
        )
    result = model.load_state_dict(state_dict, strict=False)
    missing = [key for key in result.missing_keys if key not in dropped]  # a dropped head keeps its fresh init
    if strict and (missing or result.unexpected_keys):
        raise CheckpointError(
            f"{checkpoint_path} does not fit the model: missing {missing[:5]} ({len(missing)}), unexpected "
            f"{result.unexpected_keys[:5]} ({len(result.unexpected_keys)}); check that the model (variant, deploy, "
            "features_only) matches the checkpoint, or load with strict=False"
        )
    logger.info("loaded %s (%d tensors)", checkpoint_path, len(state_dict))
    return model


def load_pretrained(
    model: Any,
    cfg: PretrainedCfg,
    cache_dir: str | Path | None = None,
    filter_fn: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    strict: bool = True,
) -> Any:
    """Download (or find in the cache) a cfg's checkpoint and load it (see ``load_checkpoint``).

    Args:
        model: the target ``nn.Module``.
        cfg: the pretrained cfg with ``hf_hub_id``/``hf_hub_filename``.
        cache_dir: Hugging Face cache directory.
        filter_fn: family filter applied to the state_dict.
        strict: as in ``load_checkpoint``.

    Returns:
        The model (loaded in place).

    Raises:
        CheckpointError: when the file cannot be fetched or does not fit.
    """
    return load_checkpoint(model, download_pretrained(cfg, cache_dir), filter_fn=filter_fn, strict=strict)


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
