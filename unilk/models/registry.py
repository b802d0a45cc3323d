"""unilk's view of timm's model registry: the same models and cfgs, limited to unilk's families.

Every model is registered with timm's ``register_model`` and described with ``generate_default_cfgs`` in its family
module, and built by timm's ``build_model_with_cfg`` (``unilk.models._builder``). These functions add only what a
unilk user expects on top: names restricted to unilk's families, a "did you mean" for unknown names, and
``checkpoint_path=`` that adapts the file (family filter, head and stem) instead of requiring an exact match.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from timm.models import get_pretrained_cfg as timm_get_pretrained_cfg

from unilk.errors import ConfigError, did_you_mean
from unilk.models._builder import FAMILY_MODULES

__all__ = [
    "list_models",
    "list_pretrained",
    "is_model",
    "model_entrypoint",
    "get_pretrained_cfg",
    "create_model",
    "checkpoint_filter_fn_for",
]


def list_models(pattern: str = "", pretrained: bool = False) -> list[str]:
    """Names of unilk's registered models, sorted (timm's ``list_models`` over unilk's families).

    Args:
        pattern: an fnmatch pattern (``"unireplknet_*"``); empty matches everything.
        pretrained: list only ``arch.tag`` names whose weights ``pretrained=True`` can fetch.

    Returns:
        Architecture names, or ``arch.tag`` names when ``pretrained`` is True.
    """
    return timm.list_models(pattern or "*", module=list(FAMILY_MODULES), pretrained=pretrained)


def list_pretrained(pattern: str = "") -> list[str]:
    """``arch.tag`` names with downloadable weights (``list_models(pattern, pretrained=True)``)."""
    return list_models(pattern, pretrained=True)


def is_model(name: str) -> bool:
    """Whether ``name`` (with or without a ``.tag``) is one of unilk's architectures."""
    return name.partition(".")[0] in list_models()


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The entrypoint of one of unilk's architectures.

    Raises:
        ConfigError: for an unknown name, with the closest registered names.
    """
    arch = name.partition(".")[0]
    known = list_models()
    if arch not in known:
        if timm.is_model(arch):
            raise ConfigError(f"unknown model {name!r}: a timm model, not one of unilk's; use timm.create_model")
        raise ConfigError(f"unknown model {name!r}; {did_you_mean(arch, known)}unilk.list_models() lists them all")
    return timm.models.model_entrypoint(arch)


def get_pretrained_cfg(name: str) -> Any:
    """The pretrained cfg of ``arch.tag`` (or the architecture's default), a ``unilk.models._builder.PretrainedCfg``.

    Raises:
        ConfigError: for an unknown architecture or tag, listing the known tags.
    """
    arch, _, tag = name.partition(".")
    model_entrypoint(arch)
    cfg = timm_get_pretrained_cfg(name, allow_unregistered=False) if tag else timm_get_pretrained_cfg(arch)
    if cfg is None:
        tags = [n.partition(".")[2] for n in timm.list_models(arch, include_tags=True) if "." in n]
        raise ConfigError(f"unknown pretrained tag {tag!r} for {arch!r}; known tags are {tags}")
    return cfg


# what timm's builder consumes before the model class sees the keywords
_BUILD_KEYWORDS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "feature_cls", "device", "dtype")


def _unknown_keyword_error(name: str, keyword: str) -> ConfigError:
    from unilk.models import RepLKNet, SLaK, UniRepLKNet

    classes = {cls.__module__: cls for cls in (UniRepLKNet, SLaK, RepLKNet)}
    model_cls = classes[model_entrypoint(name).__module__]
    valid = sorted({*inspect.signature(model_cls).parameters, *_BUILD_KEYWORDS})
    close = difflib.get_close_matches(keyword, valid, n=3)
    hint = f"did you mean {close}? " if close else ""
    return ConfigError(f"unknown keyword {keyword!r} for {name!r}; {hint}valid keywords are {valid}")


def checkpoint_filter_fn_for(model: nn.Module) -> Callable[[dict[str, Any], nn.Module], dict[str, Any]] | None:
    """The family ``checkpoint_filter_fn`` of a unilk trunk (None for another model)."""
    module = importlib.import_module(type(model).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build one of unilk's models (timm's ``create_model`` contract).

    Args:
        name: ``arch`` or ``arch.tag`` (``"unireplknet_s.in22k_ft_in1k_384"``); the tag selects the pretrained cfg.
        pretrained: load the cfg's released weights (Hugging Face hub; ``HF_HUB_OFFLINE=1`` reads the cache).
        checkpoint_path: a local ``.pth``/``.safetensors`` file to load after building: the family filter maps
            official layouts (backbone prefixes, training form into deploy form), a classifier of another size is
            dropped and the first conv adapted to ``in_chans``.
        **kwargs: model keywords (``num_classes``, ``in_chans``, ``global_pool``, ``drop_path_rate``, ``deploy``,
            ``features_only``, ``feature_cls``, ``out_indices``, ...) and timm's build keywords
            (``pretrained_cfg``, ``pretrained_cfg_overlay``, ``cache_dir``, ``device``, ``dtype``).

    Returns:
        The model, with ``pretrained_cfg`` set.

    Raises:
        ConfigError: for an unknown model name or keyword.
        CheckpointError: when weights cannot be fetched, read, or do not fit.
    """
    model_entrypoint(name)
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unknown is None:
            raise
        raise _unknown_keyword_error(name, unknown.group(1)) from err
    if checkpoint_path:
        # unilk.load's reader: any file unilk or the official repos write (a modal checkpoint gives its trunk)
        from unilk.loading import load_weights

        target = getattr(model, "model", model)  # timm's feature wrappers hold the trunk as .model
        load_weights(target, checkpoint_path, filter_fn=checkpoint_filter_fn_for(target))
    return model
