"""What the three families' ``checkpoint_filter_fn`` share: official wrappers and prefixes, backbone checkpoints, and
training-form checkpoints loaded into deploy-form models."""

import logging
from collections.abc import Callable
from typing import Any

import torch.nn as nn
from torch import Tensor

from unilk.errors import CheckpointError
from unilk.hub import unwrap_state_dict

__all__ = ["official_keys", "reparameterized_for"]

logger = logging.getLogger(__name__)


def official_keys(state_dict: Any, model: nn.Module, is_stage_norm: Callable[[str], bool]) -> dict[str, Tensor]:
    """The checkpoint's trunk keys as the model names them.

    * ``{"model": ...}``/``{"state_dict": ...}`` wrappers and ``module.`` prefixes are removed;
    * detection/segmentation checkpoints: the ``backbone.`` prefix is removed and other keys (necks, heads) dropped;
    * a classification checkpoint into a backbone (``features_only``) model: ``norm``/``head`` are dropped and the
      per-stage norms it lacks keep their initialisation (what the official backbones do with ImageNet weights).

    Args:
        state_dict: a checkpoint as read from disk.
        model: the target trunk.
        is_stage_norm: whether a key belongs to a backbone's per-stage norm.

    Returns:
        ``{key: tensor}``.
    """
    state_dict = unwrap_state_dict(state_dict)
    if any(key.startswith("backbone.") for key in state_dict):
        state_dict = {key[len("backbone.") :]: v for key, v in state_dict.items() if key.startswith("backbone.")}
    if model.features_only:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("norm.", "head."))}
        target = model.state_dict()
        missing_norms = sorted(k for k in target if is_stage_norm(k) and k not in state_dict)
        if missing_norms:
            logger.info("checkpoint has no per-stage norms; %s keep their initialisation", missing_norms)
            state_dict.update({k: target[k] for k in missing_norms})
    return state_dict


def reparameterized_for(model: nn.Module, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """A training-form checkpoint in the deploy form of ``model``: loaded into a training-form twin built from the
    model's stored arguments (``model.arch_args``), re-parameterized, and read back.

    The twin takes the checkpoint's stem and classifier; adapting them to the model happens after the filter.

    Raises:
        CheckpointError: when the checkpoint does not fit the model's architecture.
    """
    logger.info("re-parameterizing a training-form checkpoint for the deploy model")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch_args = dict(model.arch_args)
    stem = state_dict.get(f"{cfg.get('first_conv')}.weight")
    if stem is not None:
        arch_args["in_chans"] = stem.shape[1]
    head = state_dict.get(f"{cfg.get('classifier', 'head')}.weight")
    if model.features_only:
        twin = type(model)(**arch_args, features_only=True, out_indices=model.out_indices)
    else:
        twin = type(model)(**arch_args, num_classes=head.shape[0] if head is not None else 0)
    try:
        twin.load_state_dict(state_dict)
    except RuntimeError as err:
        raise CheckpointError(
            f"the training-form checkpoint does not fit this {type(model).__name__} ({model.arch_args}): "
            f"{str(err)[:300]}; build the model with the checkpoint's configuration"
        ) from err
    twin.eval().reparameterize()
    return twin.state_dict()
