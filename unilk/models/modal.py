"""One modality, one task: (learned stem) + trunk + head, as UniRepLKNet's multimodal code composes them.

The trunk is any registered model, built with ``num_classes=0`` so that ``forward_head(..., pre_logits=True)`` gives
the pooled embedding Tensor[N, D]; the head (:mod:`unilk.models.heads`) turns it into task outputs. Fixed adapters
(audio, points, video, image) run in the data pipeline and the model sees their maps; the series adapter's learned
:class:`~unilk.adapters.SeriesEmbedding` is part of the model (its stem), so series models take windows
Tensor[B, L, D] and time marks instead of maps.

Series with D channels are split by the stem into n = D / group_size nodes (Corrformer's stations per node), each a map
the trunk sees separately. A forecast is made per node (``pred_len × group_size``) and reassembled to Tensor[B, H, D];
a classification averages the node embeddings.

Layering: models do not import adapters at module import. :func:`create_modal_model` imports ``unilk.adapters`` when
called, because choosing the stem and ``in_chans`` is an adapter question.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from unilk.errors import ConfigError, InputError
from unilk.models.heads import ClassificationHead, ForecastHead, MultiLabelHead
from unilk.models.registry import create_model

__all__ = ["MODALITIES", "TASKS", "ModalModel", "create_modal_model"]

logger = logging.getLogger(__name__)

MODALITIES = ("audio", "points", "video", "series", "image")
TASKS = ("classification", "multilabel", "forecast")


class ModalModel(nn.Module):
    """A trunk and a task head, with an optional learned stem in front.

    Args:
        trunk: a model following timm's contract, built with ``num_classes=0``.
        head: a head of :mod:`unilk.models.heads`.
        modality: one of :data:`MODALITIES` (recorded, and it selects the series wiring).
        task: one of :data:`TASKS`.
        stem: for series, a ``SeriesEmbedding`` mapping Tensor[B, L, D] (+ marks) to Tensor[B·n, 1, H, W].
        adapter_config: the adapter config as a dict (saved with checkpoints so inputs can be remade).
    """

    def __init__(
        self,
        trunk: nn.Module,
        head: nn.Module,
        *,
        modality: str,
        task: str,
        stem: nn.Module | None = None,
        adapter_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ConfigError(f"ModalModel: modality={modality!r}; expected one of {list(MODALITIES)}")
        if task not in TASKS:
            raise ConfigError(f"ModalModel: task={task!r}; expected one of {list(TASKS)}")
        if (stem is not None) != (modality == "series"):
            raise ConfigError(f"ModalModel: modality {modality!r} {'needs' if stem is None else 'takes no'} a stem")
        self.modality, self.task = modality, task
        self.adapter_config = dict(adapter_config or {})
        self.stem, self.trunk, self.head = stem, trunk, head

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay: the trunk's groups, with the stem first, head last.

        The trunk's matcher is rewritten for the ``trunk.`` prefix; the learned stem (series) joins the trunk's stem in
        the first group. Parameters no rule matches (the head, and the trunk's final norm) fall into timm's last group,
        so they keep the full learning rate. A trunk without a ``group_matcher`` counts as one group.

        Args:
            coarse: passed to the trunk's matcher (one group per stage).

        Returns:
            timm's matcher dict ``{"stem": [(regex, None), ...], <trunk's other keys>: [(regex, suffix), ...]}``.
        """
        trunk_matcher = getattr(self.trunk, "group_matcher", None)
        spec = trunk_matcher(coarse=coarse) if callable(trunk_matcher) else {"stem": None, "blocks": r"^"}
        matcher: dict[str, Any] = {"stem": [(r"^stem\.", None), *_under_trunk(spec.get("stem"))]}
        for key, rules in spec.items():
            if key != "stem" and rules is not None:
                matcher[key] = _under_trunk(rules)
        return matcher

    def forward_features(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        """Pooled embeddings.

        Args:
            x: maps Tensor[N, C, H, W]; for series, windows Tensor[B, L, D].
            marks: series time marks Tensor[B, L, k] (when the stem uses time features).

        Returns:
            Tensor[N, D'] (series: Tensor[B·n, D'], node-major within each sample).
        """
        if self.stem is not None:
            x = self.stem(x, marks)  # (B·n, 1, H, W)
        elif marks is not None:
            raise InputError(f"ModalModel({self.modality}): time marks are only used by series models")
        return self.trunk.forward_head(self.trunk.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        """Task outputs: logits Tensor[N, K], or forecasts Tensor[B, pred_len, D] (series, in scaled units)."""
        feats = self.forward_features(x, marks)
        if self.stem is None:
            return self.head(feats)
        batch = x.shape[0]
        nodes = feats.shape[0] // batch
        if self.task == "forecast":
            out = self.head(feats)  # (B·n, H, g)
            # node j holds channels j·g … (j+1)·g − 1, so nodes go back side by side on the channel axis
            out = out.view(batch, nodes, *out.shape[1:]).permute(0, 2, 1, 3).reshape(batch, out.shape[1], -1)
            return self.stem.restore(out, x)  # back to the windows' scale when the stem normalised them (RevIN)
        elif self.task in ("classification", "multilabel"):
            return self.head(feats.view(batch, nodes, -1).mean(1))
        else:
            raise ConfigError(f"ModalModel: task={self.task!r}; expected one of {list(TASKS)}")

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The head's loss (cross-entropy with label smoothing, BCE, or MSE)."""
        return self.head.loss(output, target)


def _under_trunk(rules: str | list[tuple[str, Any]] | tuple[tuple[str, Any], ...] | None) -> list[tuple[str, Any]]:
    """A trunk matcher entry (a regex, or ``(regex, suffix)`` pairs) rewritten to match under ``trunk.``."""
    if rules is None:
        return []
    pairs = [(rules, None)] if isinstance(rules, str) else list(rules)
    # trunk regexes are anchored at the start of the trunk's own names; re-anchor them after the prefix
    return [(r"^trunk\." + re.sub(r"^\^", "", pattern), suffix) for pattern, suffix in pairs]


def create_modal_model(
    modality: str,
    task: str,
    trunk: str = "unireplknet_s",
    *,
    num_classes: int | None = None,
    pred_len: int | None = None,
    adapter_config: Any = None,
    head_kwargs: Mapping[str, Any] | None = None,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    **trunk_kwargs: Any,
) -> ModalModel:
    """Build stem + trunk + head for a modality and task.

    Args:
        modality: ``audio``, ``points``, ``video``, ``series`` or ``image``.
        task: ``classification``, ``multilabel`` or ``forecast`` (forecast needs ``series``).
        trunk: a registered model name (``unireplknet_s``, ``test_unireplknet``, ...).
        num_classes: classes K (classification and multilabel).
        pred_len: forecast horizon (forecast; defaults to the series config's ``pred_len``).
        adapter_config: the modality's adapter config, a dict of its fields, or None for defaults. Its adapter
            decides ``in_chans``; for series it also sizes the stem (``group_size`` = channels per node).
        head_kwargs: extra keywords of the head (``label_smoothing``, ``drop_rate``, ``norm``, ...).
        pretrained: load the trunk's released weights (its classifier is dropped).
        checkpoint_path: a local trunk checkpoint.
        **trunk_kwargs: more trunk keywords (``drop_path_rate``, ``kernel_sizes``, ...).

    Returns:
        The :class:`ModalModel`.

    Raises:
        ConfigError: unknown modality or task, a missing or contradictory size, or a trunk keyword error.
    """
    from unilk.adapters import SeriesEmbedding, build_adapter

    if modality not in MODALITIES:
        raise ConfigError(f"create_modal_model: modality={modality!r}; expected one of {list(MODALITIES)}")
    if "num_classes" in trunk_kwargs or "in_chans" in trunk_kwargs:
        raise ConfigError("create_modal_model: num_classes goes to the head and in_chans comes from the adapter")
    adapter = build_adapter(modality, adapter_config)
    stem = SeriesEmbedding(adapter.config) if modality == "series" else None
    net = create_model(
        trunk,
        pretrained=pretrained,
        checkpoint_path=checkpoint_path,
        num_classes=0,
        in_chans=adapter.in_chans,
        **trunk_kwargs,
    )
    width = net.num_features
    head_kwargs = dict(head_kwargs or {})
    if task in ("classification", "multilabel"):
        if num_classes is None or num_classes < 1:
            raise ConfigError(f"create_modal_model: task {task!r} needs num_classes >= 1, got {num_classes!r}")
        head_cls = ClassificationHead if task == "classification" else MultiLabelHead
        head: nn.Module = head_cls(width, num_classes, **head_kwargs)
    elif task == "forecast":
        if modality != "series":
            raise ConfigError(f"create_modal_model: task 'forecast' needs modality 'series', got {modality!r}")
        horizon = pred_len if pred_len is not None else adapter.config.pred_len
        head = ForecastHead(width, horizon, adapter.config.group_size, **head_kwargs)
    else:
        raise ConfigError(f"create_modal_model: task={task!r}; expected one of {list(TASKS)}")
    return ModalModel(net, head, modality=modality, task=task, stem=stem, adapter_config=adapter.config.to_dict())
