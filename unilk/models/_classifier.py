"""The classifier half of timm's model contract, shared by the three trunks (average pool -> ``head`` Linear)."""

from __future__ import annotations

import torch
import torch.nn as nn

from unilk.errors import ConfigError

__all__ = ["LinearHeadMixin"]


class LinearHeadMixin:
    """``get_classifier`` / ``reset_classifier`` for a model with ``head``, ``num_features``, ``num_classes`` and
    ``features_only`` attributes whose head is one Linear after global average pooling."""

    head: nn.Module
    num_features: int
    num_classes: int
    features_only: bool

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The classifier module (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a fresh one for ``num_classes`` (0: identity, the model returns pooled features).

        Args:
            num_classes: new number of classes.
            global_pool: only ``None`` or ``"avg"`` (these trunks always average-pool).

        Raises:
            ConfigError: in features_only (backbone) mode, or for another pooling.
        """
        name = type(self).__name__
        if self.features_only:
            raise ConfigError(f"reset_classifier: a features_only {name} has no head; build it without features_only")
        if global_pool not in (None, "avg"):
            raise ConfigError(f"reset_classifier: global_pool={global_pool!r} is not supported; expected None or 'avg'")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
