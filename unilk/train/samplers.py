"""Training samplers beyond the uniform permutation: AST's label-balanced sampling (AudioSet).

A sampler yields this rank's slice of each global batch, like
:class:`~unilk.train.distributed.GlobalBatchSampler`, and its order is a pure function of (seed, epoch), so resume
and DDP behave the same for every sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from unilk.errors import ConfigError
from unilk.train.distributed import GlobalBatchSampler

__all__ = ["BalancedBatchSampler", "label_balanced_weights"]


def label_balanced_weights(targets: Sequence[Any], num_classes: int) -> torch.Tensor:
    """Per-sample weights of AST's balanced sampling: a label seen c times weighs 1000 / (c + 0.01) and a sample
    weighs the sum over its labels, so samples of rare labels are drawn more often.

    Args:
        targets: per sample a class id (int) or a multi-hot Tensor[K].
        num_classes: K.

    Returns:
        float64 Tensor[N].

    Raises:
        ConfigError: no targets, or a target of another kind.
    """
    if not targets:
        raise ConfigError("data.sampler=balanced: the training split has no samples")
    from unilk.datasets import balanced_sample_weights

    if isinstance(targets[0], torch.Tensor) and targets[0].dim() == 1:
        return balanced_sample_weights(targets)
    if all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
        return balanced_sample_weights(torch.nn.functional.one_hot(torch.tensor(list(targets)), num_classes))
    raise ConfigError(f"data.sampler=balanced: targets like {targets[0]!r}; expected class ids or multi-hot vectors")


class BalancedBatchSampler(GlobalBatchSampler):
    """Global batches drawn with replacement in proportion to ``weights`` (``WeightedRandomSampler``'s rule), one
    epoch being as many draws as there are samples.

    Args:
        weights: float Tensor[N] ≥ 0, not all zero (:func:`label_balanced_weights`).
        batch_size: global batch size (divisible by ``world_size``).
        seed: epoch ``e`` draws from ``seed + e``.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, weights: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(len(weights), batch_size, seed, rank, world_size)
        if weights.dim() != 1 or (weights < 0).any() or not weights.sum() > 0:
            raise ConfigError("data.sampler=balanced: the sample weights must be ≥ 0 and not all 0")
        self.weights = weights.to(torch.float64)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=gen).tolist()
        local = self.batch_size // self.world_size
        for b in range(self.start_batch, self.num_samples // self.batch_size):
            start = b * self.batch_size + self.rank * local
            yield order[start : start + local]
