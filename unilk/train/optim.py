"""Optimizer (timm's factory, layer-wise decay from ``group_matcher``) and a per-update learning-rate schedule.

The schedule is a pure function of the update index, so resuming needs only the step counter.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from unilk.errors import ConfigError
from unilk.train.config import OptimConfig, SchedConfig

__all__ = ["LRSchedule", "build_optimizer", "effective_lr"]

logger = logging.getLogger(__name__)


def effective_lr(cfg: OptimConfig, global_batch: int) -> float:
    """The peak learning rate after linear batch scaling (``lr * global_batch / lr_base_batch``).

    Args:
        cfg: optimizer settings.
        global_batch: samples per optimizer update over all processes (batch × accumulation).
    """
    if cfg.lr_base_batch is None:
        return cfg.lr
    return cfg.lr * global_batch / cfg.lr_base_batch


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """Create the optimizer with timm's ``create_optimizer_v2``.

    Weight decay skips 1-D parameters and biases. With ``layer_decay`` the layer ids come from the model's
    ``group_matcher`` (timm's ``param_groups_layer_decay``); a modal model's matcher puts its stem first and its head
    last (scale 1). Groups carry an ``lr_scale`` that :class:`LRSchedule` honours.

    Args:
        model: the model to optimize (unwrapped, not the DDP wrapper).
        cfg: optimizer settings.
        lr: the peak learning rate (see :func:`effective_lr`).

    Raises:
        ConfigError: timm does not know ``opt``.
    """
    from timm.optim import create_optimizer_v2, list_optimizers

    if cfg.opt not in list_optimizers():
        raise ConfigError(f"optim.opt: got {cfg.opt!r}, expected a timm optimizer name, e.g. {list_optimizers()[:12]}")
    extra = {"betas": cfg.betas, "eps": cfg.eps} if "adam" in cfg.opt or cfg.opt in ("lamb", "nadamw") else {}
    return create_optimizer_v2(
        model,
        opt=cfg.opt,
        lr=lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        layer_decay=cfg.layer_decay,
        foreach=False,  # the for-loop kernels are bitwise reproducible across runs on CPU
        **extra,
    )


class LRSchedule:
    """Learning rate per optimizer update: linear warm-up, then cosine / step / constant.

    Args:
        optimizer: its groups get ``lr = peak_factor(step) * base_lr * lr_scale``.
        cfg: schedule settings.
        base_lr: peak learning rate.
        total_steps: number of updates of the whole run (the cosine reaches ``min_lr`` there).
        steps_per_epoch: updates per epoch (converts ``warmup_epochs`` and ``decay_epochs``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: SchedConfig,
        base_lr: float,
        total_steps: int,
        steps_per_epoch: int,
    ) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lr = base_lr
        self.total_steps = max(1, total_steps)
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
        self.decay_steps = max(1, round(cfg.decay_epochs * steps_per_epoch))
        start = cfg.decay_epochs if cfg.decay_start_epochs is None else cfg.decay_start_epochs
        self.decay_start = round(start * steps_per_epoch)

    def lr_at(self, step: int) -> float:
        """The (unscaled) learning rate used for update number ``step`` (0-based)."""
        cfg = self.cfg
        if step < self.warmup_steps:
            return cfg.warmup_lr + (self.base_lr - cfg.warmup_lr) * step / self.warmup_steps
        if cfg.sched == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return cfg.min_lr + 0.5 * (self.base_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
        if cfg.sched == "step":
            since = step - self.warmup_steps - self.decay_start
            return self.base_lr * (cfg.decay_rate ** (since // self.decay_steps + 1) if since >= 0 else 1.0)
        if cfg.sched == "constant":
            return self.base_lr
        raise ConfigError(f"sched.sched: got {cfg.sched!r}, expected 'cosine', 'step' or 'constant'")

    def set_step(self, step: int) -> float:
        """Write the learning rate of update ``step`` into every parameter group; returns the unscaled value."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
