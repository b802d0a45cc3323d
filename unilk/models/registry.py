"""The one model registry of unilk, mirrored into timm's, and the one build path every model family goes through.

How a family registers its models (see ``unireplknet.py`` for the full pattern)::

    from unilk.hub import PretrainedCfg
    from unilk.models.registry import build_model, register_model, register_pretrained_cfgs

    def _create_mynet(variant: str, pretrained: bool = False, **kwargs) -> MyNet:
        return build_model(MyNet, variant, pretrained, checkpoint_filter_fn=checkpoint_filter_fn, **kwargs)

    default_cfgs = register_pretrained_cfgs({
        "mynet_s.in1k": PretrainedCfg(hf_hub_id="org/repo", hf_hub_filename="mynet_s.pth", num_params=...),
        "mynet_tiny": PretrainedCfg(),  # an architecture without weights still gets a cfg
    })

    @register_model
    def mynet_s(pretrained: bool = False, **kwargs) -> MyNet:
        model_args = dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768))
        return _create_mynet("mynet_s", pretrained=pretrained, **dict(model_args, **kwargs))

Rules of the build path (``build_model``), so that every family behaves the same:

* ``pretrained_cfg`` (a tag such as ``"in22k"``, a dict, or a ``PretrainedCfg``) and ``pretrained_cfg_overlay`` select
  and amend the cfg; ``create_model("arch.tag")`` passes the tag. ``num_classes`` and ``in_chans`` default to the
  cfg's values.
* ``features_only=True`` (and ``out_indices``) go to the model constructor when it accepts them; otherwise the model
  is wrapped in timm's ``FeatureGetterNet`` (which needs ``forward_intermediates`` and ``feature_info``).
* ``pretrained=True`` loads the cfg's weights (Hugging Face, ``unilk.hub.load_pretrained``); ``checkpoint_path``
  loads a local ``.pth``/``.safetensors`` file (``unilk.hub.load_checkpoint``). Both apply the family's
  ``checkpoint_filter_fn(state_dict, model) -> state_dict``, drop the head when ``num_classes`` differs and adapt the
  stem when ``in_chans`` differs.
* The model gets ``model.pretrained_cfg`` (a plain dict, as timm's data-config helpers expect).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch.nn as nn

from unilk.errors import ConfigError
from unilk.hub import PretrainedCfg

__all__ = [
    "register_model",
    "register_pretrained_cfgs",
    "list_models",
    "list_pretrained",
    "is_model",
    "model_entrypoint",
    "get_pretrained_cfg",
    "create_model",
    "build_model",
]

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=nn.Module)
FilterFn = Callable[[dict[str, Any], nn.Module], dict[str, Any]]

# keywords the build path consumes itself (not passed to the model class)
_BUILD_KEYWORDS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "checkpoint_path", "features_only")
# architecture name -> entrypoint
_entrypoints: dict[str, Callable[..., nn.Module]] = {}
# architecture name -> {tag: cfg}; the first tag is the architecture's default
_pretrained_cfgs: dict[str, dict[str, PretrainedCfg]] = {}


def _split_name(name: str) -> tuple[str, str]:
    arch, _, tag = name.partition(".")
    return arch, tag


def register_pretrained_cfgs(cfgs: Mapping[str, PretrainedCfg]) -> dict[str, Any]:
    """Register pretrained cfgs keyed ``"arch.tag"`` (or just ``"arch"``); the first one per arch is its default.

    Call it before the entrypoints are decorated with ``register_model`` and keep the result in the module-level
    name ``default_cfgs``: timm's own registration reads that name to learn the cfgs.

    Args:
        cfgs: ``{"unireplknet_s.in1k": PretrainedCfg(...), ...}``.

    Returns:
        timm's ``{arch: DefaultCfg}`` for the same cfgs (assign it to ``default_cfgs`` in the family module).

    Raises:
        ConfigError: if an ``arch.tag`` is registered twice.
    """
    from timm.models import generate_default_cfgs

    timm_cfgs: dict[str, dict[str, Any]] = {}
    for name, cfg in cfgs.items():
        arch, tag = _split_name(name)
        tags = _pretrained_cfgs.setdefault(arch, {})
        if tag in tags:
            raise ConfigError(f"pretrained cfg {name!r} is registered twice; each 'arch.tag' must be unique")
        tags[tag] = replace(cfg, architecture=arch, tag=tag)
        timm_cfgs[name] = tags[tag].to_timm_dict()
    return generate_default_cfgs(timm_cfgs)


def register_model(fn: Callable[..., ModelT]) -> Callable[..., ModelT]:
    """Decorator: register a model entrypoint under its function name, in unilk's registry and in timm's.

    Args:
        fn: ``fn(pretrained: bool = False, **kwargs) -> nn.Module``; its name is the architecture name.

    Returns:
        ``fn`` unchanged.

    Raises:
        ConfigError: if the name is already registered (two families must not claim one name).
    """
    from timm.models import register_model as timm_register_model

    name = fn.__name__
    if name in _entrypoints:
        raise ConfigError(
            f"model {name!r} is already registered by {_entrypoints[name].__module__}; "
            f"{fn.__module__} tries to register it again. Rename one of them."
        )
    _entrypoints[name] = fn
    _pretrained_cfgs.setdefault(name, {"": PretrainedCfg(architecture=name)})
    timm_register_model(fn)
    return fn


def list_models(pattern: str = "", pretrained: bool = False) -> list[str]:
    """Names of the registered models, sorted.

    Args:
        pattern: an fnmatch pattern (``"unireplknet_*"``); empty matches everything.
        pretrained: list only ``arch.tag`` names whose cfg has weights.

    Returns:
        Architecture names, or ``arch.tag`` names when ``pretrained`` is True.
    """
    if pretrained:
        names = [
            f"{arch}.{tag}"
            for arch, tags in _pretrained_cfgs.items()
            if arch in _entrypoints
            for tag, cfg in tags.items()
            if tag and cfg.has_weights
        ]
    else:
        names = list(_entrypoints)
    if pattern:
        names = [name for name in names if fnmatch.fnmatch(name, pattern)]
    return sorted(names)


def list_pretrained(pattern: str = "") -> list[str]:
    """``arch.tag`` names with released weights (``list_models(pattern, pretrained=True)``)."""
    return list_models(pattern, pretrained=True)


def is_model(name: str) -> bool:
    """Whether ``name`` (with or without a ``.tag``) is a registered architecture."""
    return _split_name(name)[0] in _entrypoints


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The entrypoint of an architecture.

    Args:
        name: architecture name, optionally with a ``.tag``.

    Returns:
        The registered function.

    Raises:
        ConfigError: for an unknown name, with the closest registered names.
    """
    arch = _split_name(name)[0]
    if arch not in _entrypoints:
        close = difflib.get_close_matches(arch, list(_entrypoints), n=5)
        hint = f"did you mean {close}?" if close else "see unilk.list_models()"
        raise ConfigError(f"unknown model {name!r}; {hint}")
    return _entrypoints[arch]


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The cfg of ``arch.tag``, or the architecture's default cfg when no tag is given.

    Raises:
        ConfigError: for an unknown architecture or tag, listing the known tags.
    """
    arch, tag = _split_name(name)
    model_entrypoint(arch)
    tags = _pretrained_cfgs[arch]
    if not tag:
        return next(iter(tags.values()))
    if tag not in tags:
        raise ConfigError(f"unknown pretrained tag {tag!r} for {arch!r}; known tags are {[t for t in tags if t]}")
    return tags[tag]


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model (timm's ``create_model`` contract).

    Args:
        name: ``arch`` or ``arch.tag`` (``"unireplknet_s.in22k_ft_in1k"``); the tag selects the pretrained cfg.
        pretrained: load the cfg's released weights (through huggingface_hub; ``HF_HUB_OFFLINE=1`` uses the cache).
        checkpoint_path: a local ``.pth``/``.pt``/``.safetensors`` file to load instead.
        **kwargs: model keywords (``num_classes``, ``in_chans``, ``drop_path_rate``, ``features_only``,
            ``out_indices``, ``deploy``, ...) and build keywords (``pretrained_cfg``, ``pretrained_cfg_overlay``,
            ``cache_dir``). Keywords whose value is None are dropped, as in timm.

    Returns:
        The model, with ``pretrained_cfg`` set.

    Raises:
        ConfigError: for an unknown model name, tag or keyword.
        CheckpointError: when weights cannot be read or do not fit.
    """
    entrypoint = model_entrypoint(name)
    tag = _split_name(name)[1]
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if tag:
        if "pretrained_cfg" in kwargs:
            raise ConfigError(f"{name!r} names the tag {tag!r} and pretrained_cfg= is also given; pass only one")
        kwargs["pretrained_cfg"] = tag
    return entrypoint(pretrained=pretrained, checkpoint_path=checkpoint_path, **kwargs)


def resolve_pretrained_cfg(
    variant: str,
    pretrained_cfg: str | Mapping[str, Any] | PretrainedCfg | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
) -> PretrainedCfg:
    """The cfg a build uses: the variant's default or named tag, or a given cfg, with an overlay applied.

    Args:
        variant: architecture name.
        pretrained_cfg: None (default tag), a tag, a dict of cfg fields, or a cfg (timm's objects are accepted too).
        pretrained_cfg_overlay: fields to replace.

    Returns:
        The resolved cfg.

    Raises:
        ConfigError: for an unknown tag or an unknown cfg field.
    """
    if pretrained_cfg is None or isinstance(pretrained_cfg, str):
        cfg = get_pretrained_cfg(f"{variant}.{pretrained_cfg}" if pretrained_cfg else variant)
    elif isinstance(pretrained_cfg, PretrainedCfg):
        cfg = pretrained_cfg
    else:
        given = dict(pretrained_cfg) if isinstance(pretrained_cfg, Mapping) else pretrained_cfg.to_dict()
        valid = {f.name for f in fields(PretrainedCfg)}
        cfg = PretrainedCfg.from_dict({k: v for k, v in given.items() if k in valid and v is not None})
    if pretrained_cfg_overlay:
        cfg = cfg.updated(dict(pretrained_cfg_overlay))
    return cfg


def build_model(
    model_cls: type[ModelT],
    variant: str,
    pretrained: bool = False,
    *,
    pretrained_cfg: str | Mapping[str, Any] | PretrainedCfg | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_filter_fn: FilterFn | None = None,
    features_only: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """The one build path: resolve the cfg, build the model, load weights, wrap for features.

    Args:
        model_cls: the model class; it is called as ``model_cls(**kwargs)``.
        variant: architecture name (the registered entrypoint's name).
        pretrained: load the cfg's released weights.
        pretrained_cfg: tag, dict or cfg (see ``resolve_pretrained_cfg``).
        pretrained_cfg_overlay: cfg fields to replace.
        cache_dir: Hugging Face cache directory for ``pretrained=True``.
        checkpoint_path: a local checkpoint file to load after building.
        checkpoint_filter_fn: ``fn(state_dict, model) -> state_dict`` mapping foreign checkpoints to the model's keys.
        features_only: return the multi-scale feature maps instead of logits.
        **kwargs: the model constructor's keywords (``out_indices`` included).

    Returns:
        The model (``model.pretrained_cfg`` is set).

    Raises:
        ConfigError: for a keyword the model does not accept, or ``pretrained=True`` on a cfg without weights.
        CheckpointError: when weights cannot be read or do not fit.
    """
    from unilk import hub

    cfg = resolve_pretrained_cfg(variant, pretrained_cfg, pretrained_cfg_overlay)
    kwargs.setdefault("num_classes", cfg.num_classes)
    kwargs.setdefault("in_chans", cfg.input_size[0])
    params = inspect.signature(model_cls).parameters
    native_features = "features_only" in params
    if features_only and native_features:
        kwargs["features_only"] = True
    out_indices = None if native_features else kwargs.pop("out_indices", None)
    unknown = set(kwargs) - set(params)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = sorted({*params, *_BUILD_KEYWORDS})
        raise ConfigError(f"{model_cls.__name__} got unknown keyword(s) {sorted(unknown)}; valid keywords are {valid}")

    model = model_cls(**kwargs)
    model.pretrained_cfg = cfg.to_dict()
    if pretrained:
        hub.load_pretrained(model, cfg, cache_dir=cache_dir, filter_fn=checkpoint_filter_fn)
    if checkpoint_path:
        # unilk.load's reader: any file unilk or the official repos write (a modal checkpoint gives its trunk)
        from unilk.loading import load_weights

        load_weights(model, checkpoint_path, filter_fn=checkpoint_filter_fn)
    if features_only and not native_features:
        from timm.models import FeatureGetterNet

        model = FeatureGetterNet(model, out_indices=out_indices if out_indices is not None else (0, 1, 2, 3))
        model.pretrained_cfg = cfg.to_dict()
    return model
