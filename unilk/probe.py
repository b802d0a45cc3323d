"""Frozen-feature probes: DINO's weighted k-NN and an L2-regularised linear probe (softmax or per-label logistic).

Both take embeddings Tensor[N, D] with their targets (class indices Tensor[N], or multi-hot Tensor[N, K] for
multi-label data) and return scores on the eval embeddings; :func:`score` turns scores into top-1 accuracy or mAP.

* k-NN (Wu et al. 2018, as in DINO's ``eval_knn``): cosine similarity to every train embedding, the ``k`` most similar
  vote with weight ``exp(similarity / T)``.
* linear probe: ``mean cross-entropy + l2 · ||W||²`` (bias not penalised) on standardised features, minimised full-batch
  with L-BFGS in float64. The strength is chosen on a seeded, stratified held-out part of train, then the probe is
  refitted on all of train. In scikit-learn's terms ``l2 = 1 / (2 · C · N)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from unilk.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_L2_GRID",
    "LinearProbe",
    "fit_linear",
    "is_multilabel",
    "knn_scores",
    "linear_probe",
    "score",
    "select_l2",
]

logger = logging.getLogger(__name__)

#: L2 strengths tried by :func:`linear_probe` (log-spaced, as in the linear-probe protocols of CLIP and DINO).
DEFAULT_L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def is_multilabel(targets: Tensor) -> bool:
    """Whether ``targets`` are multi-hot rows Tensor[N, K] (else class indices Tensor[N])."""
    if targets.dim() == 2:
        return True
    elif targets.dim() == 1:
        return False
    else:
        raise InputError(
            f"probe targets: got shape {tuple(targets.shape)}; expected class indices [N] or multi-hot [N, K]"
        )


def _one_hot(targets: Tensor, num_classes: int) -> Tensor:
    return targets.float() if is_multilabel(targets) else F.one_hot(targets.long(), num_classes).float()


def _check(features: Tensor, targets: Tensor, what: str) -> None:
    if features.dim() != 2 or features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise InputError(
            f"probe {what}: features {tuple(features.shape)} and targets {tuple(targets.shape)}; expected [N, D] and "
            "[N] or [N, K] with the same N > 0"
        )
    if not torch.isfinite(features).all():
        raise InputError(f"probe {what}: the features have NaN or inf values")


@torch.no_grad()
def knn_scores(
    train: Tensor,
    train_targets: Tensor,
    test: Tensor,
    num_classes: int,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> Tensor:
    """Temperature-weighted k-NN votes on cosine similarity.

    Args:
        train: Tensor[N, D] train embeddings.
        train_targets: Tensor[N] class indices, or Tensor[N, K] multi-hot.
        test: Tensor[M, D] embeddings to classify.
        num_classes: K.
        k: neighbours (capped at N).
        temperature: T of the vote weights ``exp(sim / T)``.
        chunk: test rows per similarity block (bounds memory at chunk × N).

    Returns:
        Tensor[M, K] vote totals (higher: more likely).
    """
    _check(train, train_targets, "train")
    if k < 1 or temperature <= 0:
        raise ConfigError(f"k-NN: got k={k}, temperature={temperature}; expected k >= 1 and temperature > 0")
    bank = F.normalize(train.double(), dim=1)
    labels = _one_hot(train_targets, num_classes).double()  # (N, K)
    k = min(k, bank.shape[0])
    rows = []
    for start in range(0, test.shape[0], chunk):
        query = F.normalize(test[start : start + chunk].double(), dim=1)
        sim, index = (query @ bank.T).topk(k, dim=1)  # (m, k)
        weights = (sim / temperature).exp()
        rows.append(torch.einsum("mk,mkc->mc", weights, labels[index]))
    return torch.cat(rows).float()


@dataclass(frozen=True)
class LinearProbe:
    """A fitted linear probe on standardised features.

    Attributes:
        weight: Tensor[K, D].
        bias: Tensor[K].
        mean: Tensor[D] feature mean of the train set (standardisation).
        std: Tensor[D] feature standard deviation of the train set.
        l2: the L2 strength it was fitted with.
        multilabel: per-label logistic (sigmoid) instead of softmax.
    """

    weight: Tensor
    bias: Tensor
    mean: Tensor
    std: Tensor
    l2: float
    multilabel: bool

    def scores(self, features: Tensor) -> Tensor:
        """Logits Tensor[M, K] of features Tensor[M, D]."""
        x = (features.double() - self.mean) / self.std
        return (x @ self.weight.T + self.bias).float()


def fit_linear(
    features: Tensor, targets: Tensor, num_classes: int, l2: float, *, max_iter: int = 500, standardize: bool = True
) -> LinearProbe:
    """Fit ``mean loss + l2 · ||W||²`` full-batch with L-BFGS (float64, deterministic).

    Args:
        features: Tensor[N, D].
        targets: Tensor[N] class indices (softmax cross-entropy) or Tensor[N, K] multi-hot (per-label logistic).
        num_classes: K.
        l2: the penalty strength (>= 0).
        max_iter: L-BFGS iterations.
        standardize: centre and scale the features with their train mean and std first.

    Returns:
        The probe.
    """
    _check(features, targets, "train")
    if l2 < 0:
        raise ConfigError(f"linear probe: l2={l2}; expected >= 0")
    x = features.double()
    mean = x.mean(0) if standardize else torch.zeros(x.shape[1], dtype=torch.float64)
    std = x.std(0, unbiased=False).clamp_min(1e-12) if standardize else torch.ones(x.shape[1], dtype=torch.float64)
    x = (x - mean) / std
    multilabel = is_multilabel(targets)
    y = targets.double() if multilabel else targets.long()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        if multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / x.shape[0]
        else:
            loss = F.cross_entropy(logits, y)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearProbe(weight.detach(), bias.detach(), mean, std, float(l2), multilabel)


def score(scores: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy (class indices) or mAP (multi-hot targets), in [0, 1]."""
    if is_multilabel(targets):
        from unilk.train.metrics import mean_average_precision

        return mean_average_precision(scores.float(), targets.float())
    return (scores.argmax(1) == targets.long()).double().mean().item()


def _holdout(targets: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices ``(fit, held_out)``: a seeded split of train, stratified by class (multi-label: by first label)."""
    keys = targets.argmax(1) if is_multilabel(targets) else targets.long()
    generator = torch.Generator().manual_seed(seed)
    fit, held = [], []
    for value in keys.unique(sorted=True).tolist():
        members = (keys == value).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = round(len(members) * fraction) if len(members) > 1 else 0
        held.append(members[:n_held])
        fit.append(members[n_held:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def select_l2(
    features: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    grid: Sequence[float] = DEFAULT_L2_GRID,
    holdout: float = 0.2,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The L2 strength of ``grid`` with the best held-out score (ties: the strongest).

    Returns:
        ``(best l2, {l2: held-out score})``.
    """
    if not grid:
        raise ConfigError("linear probe: the l2 grid is empty")
    fit, held = _holdout(targets, holdout, seed)
    if len(held) == 0 or len(fit) == 0:
        raise InputError(f"linear probe: {len(targets)} train samples are too few to hold out {holdout:.0%} of them")
    results = {}
    for l2 in sorted(grid):
        _, logits = _fit_and_score(features[fit], targets[fit], features[held], num_classes, l2)
        results[l2] = score(logits, targets[held])
    best = max(results.values())
    chosen = max(l2 for l2, value in results.items() if value == best)
    logger.info("linear probe: held-out scores %s, chose l2=%g", results, chosen)
    return chosen, results


def linear_probe(
    train: Tensor,
    train_targets: Tensor,
    test: Tensor,
    num_classes: int,
    *,
    grid: Sequence[float] = DEFAULT_L2_GRID,
    holdout: float = 0.2,
    seed: int = 0,
) -> tuple[Tensor, LinearProbe, dict[float, float]]:
    """Choose the L2 strength on a held-out part of train, refit on all of train, score ``test``.

    Returns:
        ``(logits Tensor[M, K], the probe, {l2: held-out score})``.
    """
    l2, results = select_l2(train, train_targets, num_classes, grid=grid, holdout=holdout, seed=seed)
    probe, logits = _fit_and_score(train, train_targets, test, num_classes, l2)
    return logits, probe, results


def _fit_and_score(
    train: Tensor, train_targets: Tensor, test: Tensor, num_classes: int, l2: float
) -> tuple[LinearProbe, Tensor]:
    """The probe fitted on ``train`` with strength ``l2``, and its logits Tensor[M, K] on ``test``."""
    probe = fit_linear(train, train_targets, num_classes, l2)
    return probe, probe.scores(test)
