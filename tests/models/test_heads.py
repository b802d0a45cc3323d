"""Task heads: shapes, losses against their formulas, mAP on hand-computed cases, metrics in original units."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unilk.errors import ConfigError, InputError
from unilk.models.heads import ClassificationHead, ForecastHead, MultiLabelHead
from unilk.train.metrics import accuracy, forecast_metrics, mean_average_precision


def test_classification_head_label_smoothing() -> None:
    torch.manual_seed(0)
    head = ClassificationHead(8, 5, label_smoothing=0.2)
    logits = head(torch.randn(4, 8))
    assert logits.shape == (4, 5)
    target = torch.tensor([0, 3, 4, 1])
    logp = F.log_softmax(logits, dim=1)
    expected = (0.8 * -logp.gather(1, target[:, None]).squeeze(1) + 0.2 * -logp.mean(1)).mean()
    torch.testing.assert_close(head.loss(logits, target), expected)
    soft = F.one_hot(target, 5).float() * 0.5 + 0.1  # mixup-style probabilities are accepted
    assert head.loss(logits, soft).item() > 0
    with pytest.raises(InputError, match=r"\(N, 8\)"):
        head(torch.randn(4, 7))
    with pytest.raises(ConfigError, match="label_smoothing"):
        ClassificationHead(8, 5, label_smoothing=1.0)


def test_multilabel_head_bce() -> None:
    torch.manual_seed(0)
    head = MultiLabelHead(6, 3, norm=False)
    logits = head(torch.randn(5, 6))
    target = torch.randint(0, 2, (5, 3)).float()
    p = torch.sigmoid(logits)
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    torch.testing.assert_close(head.loss(logits, target), expected)


def _ap_by_loop(scores: list[float], labels: list[int]) -> float:
    """Average precision the slow way: precision at the rank of each positive, averaged."""
    ranked = [label for _, label in sorted(zip(scores, labels), key=lambda pair: -pair[0])]
    hits, precisions = 0, []
    for rank, label in enumerate(ranked, start=1):
        if label:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / len(precisions)


def test_mean_average_precision_hand_and_loop() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.9, 0.2], [0.7, 0.8, 0.1], [0.1, 0.2, 0.4]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    # class 0: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2; class 1: ranks 1, 2 -> 1; class 2 has no positive
    assert mean_average_precision(scores, targets) == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    gen = torch.Generator().manual_seed(0)
    scores, targets = torch.rand(50, 7, generator=gen), (torch.rand(50, 7, generator=gen) > 0.6).long()
    reference = sum(_ap_by_loop(scores[:, k].tolist(), targets[:, k].tolist()) for k in range(7)) / 7
    assert mean_average_precision(scores, targets) == pytest.approx(reference)
    with pytest.raises(InputError, match="no class"):
        mean_average_precision(scores, torch.zeros_like(targets))


def test_accuracy() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    assert accuracy(logits, torch.tensor([1, 2, 2])) == pytest.approx(2 / 3)
    assert accuracy(logits, torch.tensor([1, 2, 2]), topk=2) == 1.0


def test_forecast_head_and_metrics_in_original_units() -> None:
    head = ForecastHead(16, pred_len=6, channels=3)
    pred = head(torch.randn(2, 16))
    assert pred.shape == (2, 6, 3)
    target = torch.zeros(2, 6, 3)
    torch.testing.assert_close(head.loss(pred, target), pred.pow(2).mean())
    scaled_pred = torch.full((1, 2, 2), 0.5)
    scaled_true = torch.zeros(1, 2, 2)
    std, mean = torch.tensor([2.0, 10.0]), torch.tensor([100.0, -5.0])
    metrics = forecast_metrics(scaled_pred, scaled_true, lambda v: v * std + mean)
    # errors in data units are 0.5 * std = 1 and 5
    assert metrics["mae"] == pytest.approx(3.0)
    assert metrics["mse"] == pytest.approx((1 + 25) / 2)
    corr = forecast_metrics(torch.full((1, 2, 1), 30.0), torch.zeros(1, 2, 1), unit_scale=10.0)
    assert corr == pytest.approx({"mse": 9.0, "mae": 3.0})  # Corrformer: MSE / 100, MAE / 10
    with pytest.raises(InputError):
        forecast_metrics(torch.zeros(1, 2, 1), torch.zeros(1, 3, 1))
    with pytest.raises(ConfigError):
        ForecastHead(16, pred_len=0, channels=3)
