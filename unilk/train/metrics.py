"""Evaluation metrics per task, computed on the full (gathered, de-duplicated) set of predictions.

Predictions are collected with their dataset index so that, under DDP, the gathered set is checked for exactly one
prediction per sample before any metric is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from unilk.errors import ConfigError

__all__ = ["MetricAccumulator", "compute_metrics", "metric_names"]


#: top-5 accuracy is reported only above this many classes (with 5 or fewer it is always 1).
_TOP_K = 5


def metric_names(task: str, num_classes: int | None = None) -> list[str]:
    """The metrics reported for ``task`` (the CSV log columns), in order.

    Args:
        task: the recipe's task.
        num_classes: classes of a classification task (``acc5`` only with more than 5; None: unknown, listed).

    Raises:
        ConfigError: unknown task.
    """
    if task == "classification":
        return ["eval_loss", "acc", *(["acc5"] if num_classes is None or num_classes > _TOP_K else [])]
    if task == "multilabel":
        return ["eval_loss", "mAP"]
    if task == "forecast":
        return ["eval_loss", "mse", "mae"]
    raise ConfigError(f"task: got {task!r}, expected 'classification', 'multilabel' or 'forecast'")


def compute_metrics(task: str, outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """Metrics of ``outputs`` against ``targets``.

    Args:
        task: ``classification`` (outputs Tensor[N, K] logits, targets Tensor[N] class ids),
            ``multilabel`` (Tensor[N, K] logits, Tensor[N, K] multi-hot) or
            ``forecast`` (Tensor[N, H, C] forecasts and truth, in the dataset's scaled units).

    Returns:
        ``{name: value}`` with the names of :func:`metric_names`; accuracies and mAP in [0, 1].
    """
    # imported here: the heads module pulls in the model zoo, which DDP workers need not load twice
    from unilk.models.heads import accuracy, forecast_metrics, mean_average_precision

    outputs = outputs.float()
    if task == "classification":
        scores = {"eval_loss": F.cross_entropy(outputs, targets.long()).item(), "acc": accuracy(outputs, targets)}
        if outputs.shape[1] > _TOP_K:
            scores["acc5"] = accuracy(outputs, targets, topk=_TOP_K)
        return scores
    if task == "multilabel":
        return {
            "eval_loss": F.binary_cross_entropy_with_logits(outputs, targets.float()).item(),
            "mAP": mean_average_precision(outputs.sigmoid(), targets),
        }
    if task == "forecast":
        scores = forecast_metrics(outputs, targets.float())
        return {"eval_loss": scores["mse"], **scores}
    raise ConfigError(f"task: got {task!r}, expected 'classification', 'multilabel' or 'forecast'")


@dataclass
class MetricAccumulator:
    """Collects (index, output, target) per evaluated batch; :meth:`merge` checks exactly-once coverage."""

    indices: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    targets: list[Tensor] = field(default_factory=list)

    def add(self, indices: Tensor, outputs: Tensor, targets: Tensor) -> None:
        """Record one batch (moved to CPU, float32)."""
        self.indices.append(indices.cpu())
        self.outputs.append(outputs.detach().float().cpu())
        self.targets.append(targets.detach().cpu())

    def state(self) -> tuple[Tensor, Tensor, Tensor]:
        """This process's (indices, outputs, targets), concatenated."""
        return torch.cat(self.indices), torch.cat(self.outputs), torch.cat(self.targets)

    @staticmethod
    def merge(parts: list[tuple[Tensor, Tensor, Tensor]], num_samples: int) -> tuple[Tensor, Tensor]:
        """Join the parts of all ranks in dataset order, checking every sample appears exactly once.

        Raises:
            RuntimeError: a sample is missing or duplicated (a sharding bug, never a user error).
        """
        indices = torch.cat([p[0] for p in parts])
        order = indices.argsort()
        if not torch.equal(indices[order], torch.arange(num_samples)):
            raise RuntimeError(f"evaluation covered {indices.numel()} predictions for {num_samples} samples")
        return torch.cat([p[1] for p in parts])[order], torch.cat([p[2] for p in parts])[order]
