"""Evaluation metrics per task (torchmetrics), computed on the full (gathered, de-duplicated) set of predictions.

Predictions are collected with their dataset index so that, under DDP, the gathered set is checked for exactly one
prediction per sample before any metric is computed. Multi-view protocols (video clips × crops, point-cloud votes)
reduce their views to one output per sample first (:func:`reduce_views`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from unilk.errors import ConfigError, InputError

__all__ = [
    "MetricAccumulator",
    "accuracy",
    "balanced_accuracy",
    "compute_metrics",
    "forecast_metrics",
    "mean_average_precision",
    "mean_std",
    "metric_names",
    "reduce_views",
]


def accuracy(logits: Tensor, target: Tensor, topk: int = 1) -> float:
    """Top-k accuracy in [0, 1] of logits Tensor[N, K] against class indices Tensor[N] (torchmetrics)."""
    from torchmetrics.functional.classification import multiclass_accuracy

    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise InputError(f"accuracy: logits {tuple(logits.shape)} vs targets {tuple(target.shape)}")
    if logits.shape[1] == 1:  # one class: every prediction is right (torchmetrics needs K >= 2)
        return 1.0
    return multiclass_accuracy(
        logits.float(), target.long(), num_classes=logits.shape[1], top_k=min(topk, logits.shape[1]), average="micro"
    ).item()


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Mean over classes of the average precision (AudioSet's mAP; torchmetrics' per-class AP).

    Classes without a positive in ``targets`` are left out of the mean (their AP is undefined).

    Args:
        scores: Tensor[N, K], higher means more likely.
        targets: Tensor[N, K] of 0/1.

    Returns:
        mAP in [0, 1].

    Raises:
        InputError: shapes differ, or no class has a positive.
    """
    from torchmetrics.functional.classification import binary_average_precision, multilabel_average_precision

    if scores.shape != targets.shape or scores.dim() != 2:
        raise InputError(f"mean_average_precision: scores {tuple(scores.shape)} vs targets {tuple(targets.shape)}")
    valid = targets.sum(0) > 0
    if not valid.any():
        raise InputError("mean_average_precision: no class has a positive target; AP is undefined")
    # torchmetrics reads scores outside [0, 1] as logits and squashes them with a sigmoid, which saturates large
    # scores (k-NN vote sums) into ties; AP depends only on each class's ranking, so rescale monotonically instead
    scores = scores.to(torch.float64)
    low, high = scores.amin(0, keepdim=True), scores.amax(0, keepdim=True)
    scores = (scores - low) / (high - low).clamp_min(torch.finfo(torch.float64).tiny)
    with warnings.catch_warnings():  # torchmetrics warns about the classes without positives, left out below
        warnings.simplefilter("ignore", UserWarning)
        if scores.shape[1] == 1:
            return binary_average_precision(scores[:, 0].float(), targets[:, 0].long()).item()
        per_class = multilabel_average_precision(
            scores.float(), targets.long(), num_labels=scores.shape[1], average=None
        )
    return per_class[valid].mean().item()


def forecast_metrics(
    pred: Tensor, target: Tensor, inverse_transform: Callable[[Tensor], Tensor] | None = None, unit_scale: float = 1.0
) -> dict[str, float]:
    """MSE and MAE (torchmetrics) in the data's original units.

    Args:
        pred: forecasts Tensor[N, H, C] in scaled units.
        target: truth Tensor[N, H, C] in scaled units.
        inverse_transform: undoes the dataset scaling (``dataset.inverse_transform``); None if unscaled.
        unit_scale: the stored values are ``unit_scale`` × the physical units (Corrformer weather: 10), so the
            reported MSE is divided by ``unit_scale**2`` and the MAE by ``unit_scale``.

    Returns:
        ``{"mse": float, "mae": float}``.
    """
    from torchmetrics.functional import mean_absolute_error, mean_squared_error

    if pred.shape != target.shape:
        raise InputError(f"forecast_metrics: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if inverse_transform is not None:
        pred, target = inverse_transform(pred), inverse_transform(target)
    pred, target = pred.to(torch.float64) / unit_scale, target.to(torch.float64) / unit_scale
    return {"mse": mean_squared_error(pred, target).item(), "mae": mean_absolute_error(pred, target).item()}


def reduce_views(outputs: Tensor, mode: str) -> Tensor:
    """One output per sample from the outputs of its views (multi-view test).

    Args:
        outputs: logits Tensor[N, V, K].
        mode: ``softmax`` (VideoMAE: average the class probabilities; returns their log, so cross-entropy and
            accuracy read it like logits) or ``logits`` (Point-BERT's voting: average the logits).

    Returns:
        Tensor[N, K].
    """
    if mode == "softmax":
        return outputs.float().softmax(-1).mean(1).clamp_min(1e-12).log()
    elif mode == "logits":
        return outputs.float().mean(1)
    else:
        raise ConfigError(f"evaluation.reduce: got {mode!r}, expected 'softmax' or 'logits'")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for one value) of per-fold results."""
    if not values:
        raise ConfigError("mean_std: no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


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
        return ["eval_loss", "acc", *(["acc5"] if num_classes is None or num_classes > _TOP_K else []), "bacc"]
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
    outputs = outputs.float()
    if task == "classification":
        scores = {"eval_loss": F.cross_entropy(outputs, targets.long()).item(), "acc": accuracy(outputs, targets)}
        if outputs.shape[1] > _TOP_K:
            scores["acc5"] = accuracy(outputs, targets, topk=_TOP_K)
        scores["bacc"] = balanced_accuracy(outputs, targets)
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


def balanced_accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Mean per-class recall over the classes present in ``targets`` (logits Tensor[N, K], class ids Tensor[N])."""
    predicted, targets = outputs.argmax(dim=1), targets.long()
    recalls = [(predicted[targets == c] == c).float().mean() for c in targets.unique()]
    return torch.stack(recalls).mean().item()


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
