"""Task heads on pooled trunk features: classification, multi-label classification and forecasting.

Each head maps the pooled embedding Tensor[N, D] (``trunk.forward_head(x, pre_logits=True)``) to task outputs and
owns its loss; the metrics are in :mod:`unilk.train.metrics`. The classification heads are LayerNorm + Linear, the
``mlp_head`` of UniRepLKNet's audio and point code.
"""

from __future__ import annotations

import logging

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from unilk.errors import ConfigError, InputError

__all__ = [
    "ClassificationHead",
    "ForecastHead",
    "MultiLabelHead",
]

logger = logging.getLogger(__name__)


def _mlp(in_features: int, out_features: int, norm: bool, drop_rate: float) -> nn.Sequential:
    """LayerNorm (optional) -> Dropout -> Linear."""
    if in_features < 1 or out_features < 1:
        raise ConfigError(f"head: in_features={in_features}, out_features={out_features}; expected both >= 1")
    if not 0.0 <= drop_rate < 1.0:
        raise ConfigError(f"head: drop_rate={drop_rate}; expected 0 <= drop_rate < 1")
    return nn.Sequential(
        nn.LayerNorm(in_features) if norm else nn.Identity(),
        nn.Dropout(drop_rate),
        nn.Linear(in_features, out_features),
    )


def _check_features(x: Tensor, in_features: int, owner: str) -> None:
    """Raise InputError unless x is Tensor[N, in_features]."""
    if x.dim() != 2 or x.shape[1] != in_features:
        raise InputError(f"{owner}: features of shape {tuple(x.shape)}; expected (N, {in_features})")


class ClassificationHead(nn.Module):
    """Single-label classification: LayerNorm + Linear, cross-entropy with label smoothing.

    Args:
        in_features: D of the pooled features.
        num_classes: K.
        norm: apply LayerNorm first.
        drop_rate: dropout before the Linear.
        label_smoothing: ε of the cross-entropy (0.1 for video, 0.2 for points in the official recipes).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        norm: bool = True,
        drop_rate: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"ClassificationHead: label_smoothing={label_smoothing}; expected 0 <= value < 1")
        self.in_features, self.num_classes, self.label_smoothing = in_features, num_classes, label_smoothing
        self.mlp = _mlp(in_features, num_classes, norm, drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        """Tensor[N, D] -> logits Tensor[N, K]."""
        _check_features(x, self.in_features, type(self).__name__)
        return self.mlp(x)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy with label smoothing.

        Args:
            logits: Tensor[N, K].
            target: class indices Tensor[N] (int), or class probabilities Tensor[N, K] (e.g. after mixup).

        Returns:
            Scalar mean loss.
        """
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)


class MultiLabelHead(nn.Module):
    """Multi-label classification (AudioSet): LayerNorm + Linear, binary cross-entropy per class; evaluate with mAP.

    Args:
        in_features: D of the pooled features.
        num_classes: K.
        norm: apply LayerNorm first.
        drop_rate: dropout before the Linear.
        pos_weight: optional Tensor[K] weighting the positives of each class in the BCE.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        norm: bool = True,
        drop_rate: float = 0.0,
        pos_weight: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.mlp = _mlp(in_features, num_classes, norm, drop_rate)
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Tensor[N, D] -> logits Tensor[N, K] (apply a sigmoid for per-class probabilities)."""
        _check_features(x, self.in_features, type(self).__name__)
        return self.mlp(x)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean BCE-with-logits over the N×K entries; ``target`` is a float multi-hot Tensor[N, K]."""
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=self.pos_weight)


class ForecastHead(nn.Module):
    """Forecasting: Linear from the pooled features to ``pred_len × channels`` values, trained with MSE.

    Outputs are in the dataset's scaled units; :func:`forecast_metrics` reports errors in the original units.

    Args:
        in_features: D of the pooled features.
        pred_len: forecast horizon H.
        channels: output channels C.
        norm: apply LayerNorm first.
        drop_rate: dropout before the Linear.
    """

    def __init__(
        self, in_features: int, pred_len: int, channels: int, *, norm: bool = False, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        if pred_len < 1 or channels < 1:
            raise ConfigError(f"ForecastHead: pred_len={pred_len}, channels={channels}; expected both >= 1")
        self.in_features, self.pred_len, self.channels = in_features, pred_len, channels
        self.mlp = _mlp(in_features, pred_len * channels, norm, drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        """Tensor[N, D] -> forecasts Tensor[N, H, C]."""
        _check_features(x, self.in_features, type(self).__name__)
        return self.mlp(x).view(-1, self.pred_len, self.channels)  # (N, H, C)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean squared error over Tensor[N, H, C] (scaled units)."""
        if pred.shape != target.shape:
            raise InputError(f"ForecastHead.loss: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
        return F.mse_loss(pred, target.to(pred.dtype))
