"""SLaK's dynamic sparse training: per-layer masks, magnitude pruning with random regrowth, sparse-aware EMA.

The algorithm follows SLaK's ``sparse_core.Masking`` (spec ``slak_replknet.md`` A4) with its quirks decided explicitly:

- masks are applied after **every** optimizer step in every precision mode (the official code silently goes dense
  under AMP);
- masks live in this object's ``state_dict`` and are saved with training checkpoints (the official code does not save
  them); the model's own ``state_dict`` keeps the official keys;
- the initial mask draws an exact number of random positions per layer, and the default growth ``random_exact``
  regrows exactly as many weights as were pruned, so each layer holds its density. ``growth="random"`` is the
  official Bernoulli regrowth, whose density drifts as a random walk (A4.6.2).

Usage in a training loop (the unilk engine does this when a recipe has a ``sparsity:`` section)::

    sparsity = DynamicSparsity(model, SparsityConfig(sparsity=0.4), total_steps=len(loader) * epochs)
    sparsity.init_masks(snip_loss=lambda m: F.cross_entropy(m(x0), y0))
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
        sparsity.after_optimizer_step(optimizer)   # before zero_grad (gradient growth reads .grad)
        optimizer.zero_grad()
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from unilk.errors import ConfigError, unknown_keys_error

__all__ = [
    "DynamicSparsity",
    "SparsityConfig",
    "masked_ema_update",
    "nonzero_param_count",
    "prune_rate_at",
]

logger = logging.getLogger(__name__)

_INITS = ("snip", "erk", "uniform")
_GROWTHS = ("random_exact", "random", "gradient")


@dataclass(frozen=True)
class SparsityConfig:
    """Options of dynamic sparse training (the ``sparsity:`` section of a recipe).

    Attributes:
        sparsity: overall fraction of masked weights that are zero (SLaK: 0.4).
        init: initial per-layer density: ``snip`` (SLaK; needs one batch), ``erk`` or ``uniform``.
        growth: ``random_exact`` (regrow exactly the pruned count), ``random`` (official Bernoulli regrowth, density
            drifts) or ``gradient`` (largest-|grad| zero positions).
        prune_rate: initial fraction p of active weights pruned at each update (SLaK-T 0.5, S/B 0.3).
        final_prune_rate: p at the end of the cosine decay (official 0.005).
        update_frequency: optimizer steps between mask updates (SLaK-T 2000, S/B 100).
        fix: static sparse training: masks never change after initialisation.
        only_large_kernels: mask only the large-kernel branches (names containing ``large_kernel.``).
        mask_optimizer_state: also zero AdamW/SGD moments at pruned positions (the official code keeps Adam's).
        dense_threshold: a layer whose initial density is at least this stays dense (official 0.99).
        seed: seed of the mask random generator (positions, regrowth).
    """

    sparsity: float = 0.4
    init: str = "snip"
    growth: str = "random_exact"
    prune_rate: float = 0.3
    final_prune_rate: float = 0.005
    update_frequency: int = 100
    fix: bool = False
    only_large_kernels: bool = False
    mask_optimizer_state: bool = False
    dense_threshold: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"sparsity.sparsity must be in [0, 1), got {self.sparsity}")
        if self.init not in _INITS:
            raise ConfigError(f"sparsity.init must be one of {_INITS}, got {self.init!r}")
        if self.growth not in _GROWTHS:
            raise ConfigError(f"sparsity.growth must be one of {_GROWTHS}, got {self.growth!r}")
        if not 0.0 <= self.final_prune_rate <= self.prune_rate < 1.0:
            raise ConfigError(
                f"sparsity needs 0 <= final_prune_rate <= prune_rate < 1, got {self.final_prune_rate}, "
                f"{self.prune_rate}"
            )
        if self.update_frequency < 1:
            raise ConfigError(f"sparsity.update_frequency must be >= 1, got {self.update_frequency}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparsityConfig:
        """Build from a mapping, rejecting unknown keys."""
        valid = {f.name for f in fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise unknown_keys_error("sparsity", unknown, valid)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that ``from_dict`` accepts."""
        return asdict(self)


def prune_rate_at(step: int, total_steps: int, initial: float, final: float) -> float:
    """Cosine decay of the prune rate: ``final + (initial - final)(1 + cos(pi t / T)) / 2``, clamped at ``T``."""
    t = min(step, total_steps) / max(total_steps, 1)
    return final + (initial - final) * (1.0 + math.cos(math.pi * t)) / 2.0


def _random_mask(shape: torch.Size, density: float, generator: torch.Generator) -> Tensor:
    """A boolean mask with exactly ``round(density * numel)`` ones at random positions."""
    numel = math.prod(shape)
    keep = round(density * numel)
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:keep]] = True
    return mask.view(shape)


class DynamicSparsity:
    """Masks for a model's 2-D and 4-D weights, updated by prune-and-regrow during training.

    Args:
        model: the model (unwrapped; not the DDP wrapper) whose weights are masked.
        config: the sparsity options.
        total_steps: optimizer steps of the whole run (for the prune-rate schedule).
    """

    def __init__(self, model: nn.Module, config: SparsityConfig, total_steps: int) -> None:
        self.model = model
        self.config = config
        self.total_steps = total_steps
        self.step_count = 0
        self.masks: dict[str, Tensor] = {}
        self.generator = torch.Generator().manual_seed(config.seed)
        self._params = dict(model.named_parameters())

    # -- which tensors ------------------------------------------------------------------------------------------------
    def _candidates(self) -> dict[str, nn.Parameter]:
        chosen = {}
        for name, param in self._params.items():
            if param.dim() not in (2, 4):
                continue
            if self.config.only_large_kernels and "large_kernel." not in name:
                continue
            chosen[name] = param
        if not chosen:
            raise ConfigError("sparsity: the model has no 2-D or 4-D weight to mask (check only_large_kernels)")
        return chosen

    # -- initialisation -----------------------------------------------------------------------------------------------
    def init_masks(self, snip_loss: Callable[[nn.Module], Tensor] | None = None) -> None:
        """Choose per-layer densities, draw random masks and zero the masked-out weights.

        Args:
            snip_loss: for ``init="snip"``: computes the loss of one training batch on the model it is given (a deep
                copy in train mode); its gradients score the weights.

        Raises:
            ConfigError: if ``init="snip"`` and no ``snip_loss`` is given.
        """
        candidates = self._candidates()
        density = 1.0 - self.config.sparsity
        if self.config.init == "snip":
            if snip_loss is None:
                raise ConfigError("sparsity.init='snip' needs one batch: pass snip_loss to init_masks")
            layer_density = self._snip_densities(candidates, density, snip_loss)
        elif self.config.init == "erk":
            layer_density = _erk_densities({n: p.shape for n, p in candidates.items()}, density)
        elif self.config.init == "uniform":
            layer_density = dict.fromkeys(candidates, density)
        else:  # pragma: no cover - SparsityConfig validates init
            raise ConfigError(f"unknown sparsity.init {self.config.init!r}")

        self.masks = {}
        for name, param in candidates.items():
            if layer_density[name] >= self.config.dense_threshold:
                logger.info("sparsity: %s stays dense (initial density %.3f)", name, layer_density[name])
                continue
            self.masks[name] = _random_mask(param.shape, layer_density[name], self.generator).to(param.device)
        self._broadcast_masks()
        self.apply_masks()
        logger.info(
            "sparsity: %d of %d candidate weights masked, overall density %.4f",
            len(self.masks),
            len(candidates),
            self.overall_density(),
        )

    def _snip_densities(
        self, candidates: dict[str, nn.Parameter], density: float, snip_loss: Callable[[nn.Module], Tensor]
    ) -> dict[str, float]:
        # SNIP decides only the layer-wise ratios; positions are drawn at random afterwards (spec A4.2).
        scout = copy.deepcopy(self.model).train()
        scout.zero_grad(set_to_none=True)
        snip_loss(scout).backward()
        scout_params = dict(scout.named_parameters())
        scores = {}
        for name in candidates:
            grad = scout_params[name].grad
            if grad is None:
                raise ConfigError(f"sparsity: SNIP loss gives no gradient for {name}; is the parameter used?")
            scores[name] = (scout_params[name].detach() * grad).abs().flatten().float()
        all_scores = torch.cat(list(scores.values()))
        keep = int(density * all_scores.numel())
        threshold = torch.topk(all_scores, keep, sorted=True).values[-1] if keep > 0 else all_scores.max() + 1
        return {name: (score > threshold).float().mean().item() for name, score in scores.items()}

    # -- per step -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def apply_masks(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero every masked-out weight (and, if configured or for SGD momentum, its optimizer moments)."""
        for name, mask in self.masks.items():
            param = self._params[name]
            param.mul_(mask)
            if optimizer is None:
                continue
            state = optimizer.state.get(param, {})
            if "momentum_buffer" in state and state["momentum_buffer"] is not None:
                state["momentum_buffer"].mul_(mask)  # official: SGD momentum is always masked
            if self.config.mask_optimizer_state:
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key].mul_(mask)

    def current_prune_rate(self) -> float:
        """The prune rate p at the current step of the cosine schedule."""
        cfg = self.config
        return prune_rate_at(self.step_count, self.total_steps, cfg.prune_rate, cfg.final_prune_rate)

    def after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Call once after every ``optimizer.step()`` (before ``zero_grad``): mask, advance, maybe prune and regrow."""
        self.apply_masks(optimizer)
        self.step_count += 1
        if not self.config.fix and self.step_count % self.config.update_frequency == 0:
            self.update_masks()
            self.apply_masks(optimizer)

    @torch.no_grad()
    def update_masks(self) -> None:
        """Prune the ``ceil(p * nnz)`` smallest-magnitude active weights of each layer, then regrow."""
        rate = self.current_prune_rate()
        for name, mask in self.masks.items():
            param = self._params[name]
            nnz = int(mask.sum())
            removed = math.ceil(rate * nnz)
            if removed == 0:
                continue
            flat_mask = mask.flatten().clone()
            # Inactive weights are exactly zero, so ranking |w| with inactive entries pushed to +inf would be the
            # same as the official sort; ranking only active positions avoids ties between zeros and small weights.
            magnitude = param.detach().flatten().abs().float()
            magnitude[~flat_mask] = float("inf")
            prune_idx = torch.topk(magnitude, removed, largest=False).indices
            flat_mask[prune_idx] = False
            self.masks[name] = self._regrow(name, flat_mask, removed).view_as(mask)
        self._broadcast_masks()

    def _regrow(self, name: str, flat_mask: Tensor, count: int) -> Tensor:
        zeros = (~flat_mask).nonzero().flatten()
        growth = self.config.growth
        if growth == "random_exact":
            chosen = zeros[torch.randperm(zeros.numel(), generator=self.generator)[:count].to(zeros.device)]
        elif growth == "random":
            draw = torch.rand(zeros.numel(), generator=self.generator).to(zeros.device)
            chosen = zeros[draw < count / max(zeros.numel(), 1)]
        elif growth == "gradient":
            grad = self._params[name].grad
            if grad is None:
                raise ConfigError(
                    "sparsity.growth='gradient' needs gradients: call after_optimizer_step before zero_grad"
                )
            score = grad.detach().flatten().abs().float()[zeros]
            chosen = zeros[torch.topk(score, min(count, zeros.numel())).indices]
        else:  # pragma: no cover - SparsityConfig validates growth
            raise ConfigError(f"unknown sparsity.growth {growth!r}")
        flat_mask[chosen] = True
        return flat_mask

    def _broadcast_masks(self) -> None:
        # Weights are identical on every rank under DDP, and so is the generator, but a broadcast after each change
        # makes equality a guarantee rather than a consequence (one collective per layer per update, not per step).
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for name in sorted(self.masks):
            as_bytes = self.masks[name].to(torch.uint8)
            dist.broadcast(as_bytes, src=0)
            self.masks[name] = as_bytes.bool()

    # -- reporting and persistence ------------------------------------------------------------------------------------
    def density_report(self) -> list[dict[str, Any]]:
        """Per masked layer: name, shape, number of weights, active weights and density."""
        return [
            {
                "name": name,
                "shape": tuple(mask.shape),
                "numel": mask.numel(),
                "active": int(mask.sum()),
                "density": float(mask.float().mean()),
            }
            for name, mask in self.masks.items()
        ]

    def overall_density(self) -> float:
        """Active fraction over all masked weights."""
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / max(total, 1)

    def state_dict(self) -> dict[str, Any]:
        """Masks, step count, generator state and config, for checkpoints (tensors and plain types only)."""
        return {
            "masks": {name: mask.cpu() for name, mask in self.masks.items()},
            "step_count": self.step_count,
            "generator": self.generator.get_state(),
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks, step count and generator state saved by ``state_dict``, and re-apply the masks."""
        if state["config"] != self.config.to_dict():
            logger.warning("sparsity: resuming with a different config than the checkpoint's: %s", state["config"])
        unknown = set(state["masks"]) - set(self._params)
        if unknown:
            raise ConfigError(f"sparsity: checkpoint masks name parameters the model lacks: {sorted(unknown)}")
        self.masks = {name: mask.to(self._params[name].device) for name, mask in state["masks"].items()}
        self.step_count = int(state["step_count"])
        self.generator.set_state(state["generator"])
        self.apply_masks()


def _erk_densities(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities: raw density ∝ sum(shape) / prod(shape), layers above 1 made dense iteratively."""
    dense: set[str] = set()
    total = sum(math.prod(s) for s in shapes.values())
    while True:
        budget = density * total - sum(math.prod(shapes[n]) for n in dense)
        raw = {n: sum(s) / math.prod(s) for n, s in shapes.items() if n not in dense}
        weighted = sum(raw[n] * math.prod(shapes[n]) for n in raw)
        epsilon = budget / weighted if weighted > 0 else 0.0
        over = {n for n, r in raw.items() if epsilon * r > 1.0}
        if not over:
            densities = {n: epsilon * r for n, r in raw.items()}
            densities.update(dict.fromkeys(dense, 1.0))
            return densities
        dense |= over


@torch.no_grad()
def masked_ema_update(ema: nn.Module, model: nn.Module, masks: dict[str, Tensor], decay: float) -> None:
    """One sparse-aware EMA step (SLaK's ``ModelEma.update(model, mask)``).

    For masked tensors: ``ema <- (d*ema + (1-d)*w) * m + d*w*[m = 1 and ema = 0]``: pruned positions become 0 and
    newly active ones restart from the current weight. Other parameters and buffers follow the plain EMA.

    Args:
        ema: the EMA copy of the model (same parameter names).
        model: the trained model.
        masks: ``DynamicSparsity.masks``.
        decay: the EMA decay d.
    """
    model_state = model.state_dict()
    for name, ema_value in ema.state_dict().items():
        value = model_state[name]
        if not ema_value.dtype.is_floating_point:
            ema_value.copy_(value)
            continue
        if name in masks:
            mask = masks[name].to(ema_value.dtype)
            fresh = mask * (ema_value == 0).to(ema_value.dtype)
            ema_value.copy_((decay * ema_value + (1 - decay) * value) * mask + decay * value * fresh)
        else:
            ema_value.mul_(decay).add_(value, alpha=1 - decay)


def nonzero_param_count(model: nn.Module) -> tuple[int, int]:
    """``(total, non-zero)`` parameter counts: the dense and the sparse size of a model."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())
    return total, nonzero
