"""How every unilk model is built: timm's ``build_model_with_cfg`` plus the two things timm leaves to a family.

1. ``features_only=True`` without a ``feature_cls`` builds the official dense-prediction backbone (per-stage norms
   with the official key names, no classifier), so that official detection/segmentation checkpoints load strictly.
   With a ``feature_cls`` (``'getter'``, ``'hook'``, ``'fx'``, ``'list'``, ``'dict'`` or a class) timm wraps the
   classification model; ``'list'`` and ``'dict'`` use ``forward_intermediates`` (the trunks are not one flat
   sequence of modules).
2. ``device=`` and ``dtype=`` are applied while building, so ``create_model(..., device="meta")`` allocates nothing.

Pretrained weights go through timm's loader (safetensors or ``torch.load(weights_only=True)``, the family's
``checkpoint_filter_fn``, first-conv adaptation for another ``in_chans``, classifier dropped for another
``num_classes``); a failed download becomes a ``CheckpointError`` naming the file and how to get it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn as nn
from timm.models import PretrainedCfg as TimmPretrainedCfg
from timm.models import build_model_with_cfg
from timm.models._features import FeatureGetterNet

from unilk.errors import CheckpointError

__all__ = ["FAMILY_MODULES", "PretrainedCfg", "build_trunk", "check_pretrained_available"]

ModelT = TypeVar("ModelT", bound=nn.Module)
FilterFn = Callable[[dict[str, Any], nn.Module], dict[str, Any]]

# the module names timm files unilk's entrypoints under (``timm.list_models(module=...)``)
FAMILY_MODULES = ("unireplknet", "slak", "replknet")


@dataclasses.dataclass
class PretrainedCfg(TimmPretrainedCfg):
    """timm's pretrained cfg plus what unilk records about a checkpoint.

    Attributes:
        num_params: parameter count of the model the weights load into (checked by the tests).
        adapter: the modality adapter config the weights expect (``{"modality": ..., **fields}``), if any.
    """

    num_params: int | None = None
    adapter: Mapping[str, Any] | None = None


class FeatureListGetterNet(FeatureGetterNet):
    """``feature_cls='list'`` for a trunk: the stage outputs as a list, taken by ``forward_intermediates``."""


class FeatureDictGetterNet(FeatureGetterNet):
    """``feature_cls='dict'`` for a trunk: ``{"stages_i": map}`` in stage order (timm's ``FeatureDictNet`` names)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """``(N, C, H, W) -> {"stages_i": (N, C_i, H_i, W_i)}``."""
        features = super().forward(x)
        names = [info["module"].replace(".", "_") for info in self.feature_info.get_dicts()]
        return OrderedDict(zip(names, features))


_FEATURE_CLASSES: dict[str, type[nn.Module]] = {"list": FeatureListGetterNet, "dict": FeatureDictGetterNet}


def _default_feature_cfg(num_stages: int) -> dict[str, Any]:
    return dict(feature_cls="getter", out_indices=tuple(range(num_stages)))


def build_trunk(
    model_cls: type[ModelT],
    variant: str,
    pretrained: bool,
    *,
    filter_fn: FilterFn,
    num_stages: int = 4,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered trunk through timm's builder.

    Args:
        model_cls: the family's model class.
        variant: the registered architecture name.
        pretrained: load the pretrained cfg's weights.
        filter_fn: the family's ``checkpoint_filter_fn(state_dict, model)``.
        num_stages: stages of the trunk (the default ``out_indices`` of a feature wrapper).
        **kwargs: model keywords and timm's build keywords (``pretrained_cfg``, ``pretrained_cfg_overlay``,
            ``cache_dir``, ``features_only``, ``feature_cls``, ``out_indices``, ``device``, ``dtype``).

    Returns:
        The model (``pretrained_cfg`` and ``default_cfg`` set), or a timm feature wrapper around it.

    Raises:
        CheckpointError: when pretrained weights cannot be fetched or read.
    """
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    feature_cfg = _default_feature_cfg(num_stages)
    if kwargs.get("features_only"):
        feature_cls = kwargs.pop("feature_cls", None)
        if feature_cls is None:  # the official backbone: the model builds its own per-stage norms
            kwargs.pop("features_only")
            model_cls = functools.partial(model_cls, features_only=True)  # type: ignore[assignment]
        else:
            feature_cfg["feature_cls"] = _FEATURE_CLASSES.get(feature_cls, feature_cls)
    tag = kwargs.get("pretrained_cfg")
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    if pretrained and not overlay.get("file") and (tag is None or isinstance(tag, str)):
        # fail at once when the file can be had neither from the cache nor the network (no half-minute of retries)
        name = f"{variant}.{tag}" if tag else variant
        check_pretrained_available(name, kwargs.get("cache_dir"), overlay=overlay)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        try:
            model = build_model_with_cfg(
                model_cls, variant, pretrained, pretrained_filter_fn=filter_fn, feature_cfg=feature_cfg, **kwargs
            )
        except (OSError, RuntimeError) as err:
            if not pretrained or isinstance(err, CheckpointError):
                raise
            raise _download_error(variant, kwargs, err) from err
    if dtype is not None:
        model.to(dtype=dtype)
    return model


#: the ways out of a missing pretrained file, in create_model's words
_CREATE_ALTERNATIVES = "or pass checkpoint_path= with a local file, or pretrained=False for random weights"
#: seconds to wait for the weights' host before calling the machine offline (instead of retrying for half a minute).
_REACH_TIMEOUT_S = 3.0


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (set now, or when it was imported)."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return now or bool(constants.HF_HUB_OFFLINE)


def _reachable(url: str) -> bool:
    """Whether the host of ``url`` accepts a connection within a few seconds (no retries)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=_REACH_TIMEOUT_S):
            return True
    except OSError:
        return False


def check_pretrained_available(
    model: str,
    cache_dir: str | os.PathLike[str] | None = None,
    alternatives: str = _CREATE_ALTERNATIVES,
    overlay: Mapping[str, Any] | None = None,
) -> None:
    """Fail at once when ``model``'s (``arch`` or ``arch.tag``) pretrained weights are neither cached nor fetchable.

    Args:
        model: the registered name.
        cache_dir: the Hugging Face cache to look in (default: huggingface_hub's).
        alternatives: the other ways out, in the caller's words (``"or pass ..."``).
        overlay: ``pretrained_cfg_overlay`` fields (another hub file or URL) over the registered cfg.

    Raises:
        CheckpointError: naming the file, its URL, the command that fetches it, and ``alternatives``.
    """
    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    if overlay:
        cfg = dataclasses.replace(cfg, **overlay) if cfg is not None else TimmPretrainedCfg(**overlay)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise _download_error(model, {}, OSError("no released weights"), alternatives=alternatives)
    if cfg.hf_hub_id:
        cached = try_to_load_from_cache(cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors", cache_dir=cache_dir)
        if isinstance(cached, str):
            return
        reason = "not in the local Hugging Face cache"
        if not _hub_offline():
            if _reachable(constants.ENDPOINT):
                return
            reason = f"not in the local Hugging Face cache, and {constants.ENDPOINT} cannot be reached (offline?)"
    else:
        cached_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if cached_file.is_file() or _reachable(cfg.url):
            return
        reason = f"not in {cached_file.parent}, and the host cannot be reached (offline?)"
    raise _download_error(model, {}, OSError(reason), alternatives=alternatives)


def _download_error(
    variant: str, kwargs: Mapping[str, Any], err: Exception, alternatives: str = _CREATE_ALTERNATIVES
) -> CheckpointError:
    """The CheckpointError for weights that cannot be had: the file, its URL, the fetch command, ``alternatives``."""
    from timm.models import get_pretrained_cfg

    tag = kwargs.get("pretrained_cfg")
    cfg = get_pretrained_cfg(f"{variant}.{tag}" if isinstance(tag, str) and tag else variant)
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    source = overlay.get("file") or (
        f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{cfg.hf_hub_filename}" if cfg and cfg.hf_hub_id else None
    )
    # huggingface_hub's CLI is `hf` (the pinned release has no `huggingface-cli`)
    fetch = f"hf download {cfg.hf_hub_id} {cfg.hf_hub_filename}" if cfg and cfg.hf_hub_filename else None
    if not (cfg and (cfg.hf_hub_id or cfg.url)) and not overlay.get("file"):
        return CheckpointError(
            f"{variant!r} has no released weights that pretrained=True can fetch (docs/models.md lists where the "
            f"official files are); {alternatives}"
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    hint = f"Fix: {alternatives.removeprefix('or ')}"
    if fetch:
        hint = f"Fix: fetch it once with `{fetch}`, then retry; {alternatives}"
    if offline:
        hint = f"HF_HUB_OFFLINE is set, so only the local cache is searched. {hint}"
    return CheckpointError(
        f"could not load pretrained weights for {variant!r} from {source or 'its pretrained cfg'}: "
        f"{str(err).splitlines()[0][:300]}. {hint}"
    )
