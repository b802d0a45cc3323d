"""The trunk scaffold shared by UniRepLKNet, SLaK and RepLKNet: stages, pooled head and timm's model contract.

A family subclasses ``LargeKernelTrunk``, builds its stem, downsampling layers and ``stages`` (one module per stage,
keys ``stages.{i}...``), then calls ``_init_head`` (classifier) or ``_init_backbone`` (the official dense-prediction
form with per-stage norms) and implements ``_stage_input(index, x)``: what runs before stage ``index`` (the stem for
0, a downsampling or transition layer after). Everything else of timm's contract lives here once:
``set_grad_checkpointing``, ``get_classifier``/``reset_classifier`` with ``global_pool`` ('', 'avg', 'max',
'avgmax'), ``forward_intermediates``/``prune_intermediate_layers`` (through timm's ``feature_take_indices``),
``forward_features``, ``forward_head(pre_logits)``, ``forward``, ``reparameterize`` and the drop-path schedule.
"""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from timm.layers import SelectAdaptivePool2d
from timm.models import FeatureInfo, checkpoint_seq
from timm.models._features import feature_take_indices
from torch import Tensor

from unilk.errors import ConfigError
from unilk.layers.fast_path import set_fast_path, set_lkconv_mode
from unilk.ops.fused import fast_path_from_env
from unilk.ops.lkconv import mode_from_env

__all__ = ["POOL_TYPES", "LargeKernelTrunk", "TrunkStage", "drop_path_rates", "stage_feature_info"]

# user-facing pooling names -> timm's pooling layer names ('fast*' pool with Tensor.mean/amax, the official op)
POOL_TYPES = {"": "", "avg": "fastavg", "max": "fastmax", "avgmax": "fastavgmax"}


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 over all blocks, split per stage (the official schedule)."""
    # linspace on the CPU: .tolist() must also work while the model is built on the meta device
    rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[start : start + depth] for start, depth in zip(starts, depths)]


def stage_feature_info(dims: Sequence[int], first_reduction: int = 4) -> list[dict[str, Any]]:
    """timm's ``feature_info`` for stages ``stages.{i}`` of widths ``dims``, each halving the map."""
    return [dict(num_chs=d, reduction=first_reduction * 2**i, module=f"stages.{i}") for i, d in enumerate(dims)]


class TrunkStage(nn.Sequential):
    """The blocks of one stage (keys ``stages.{i}.{j}``), with gradient checkpointing per block."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self, x)
        for block in self:
            x = block(x)
        return x


class LargeKernelTrunk(nn.Module):
    """Four-stage ConvNet trunk with a pooled classifier or per-stage backbone outputs (timm's model contract).

    Subclasses set ``stages`` (a ``nn.ModuleList`` of stage modules with a ``grad_checkpointing`` attribute) and
    implement ``_stage_input`` and ``_prune_stage_inputs``; they may override ``_stage_norm`` (backbone outputs) and
    add ``group_matcher``. (No class-level annotations: TorchScript would read them as attribute types.)
    """

    # ---- construction helpers -------------------------------------------------------------------------------------

    def _init_head(
        self, num_classes: int, global_pool: str, drop_rate: float, norm: nn.Module, *, norm_first: bool = False
    ) -> None:
        """Classifier: [norm ->] pool [-> norm] -> dropout -> Linear ``head`` (keys ``norm.*``, ``head.*``).

        Args:
            num_classes: 0 gives an identity head.
            global_pool: '', 'avg', 'max' or 'avgmax'.
            drop_rate: dropout before the head.
            norm: the head's norm (RepLKNet's BatchNorm2d on the map, or a LayerNorm on the pooled vector).
            norm_first: apply ``norm`` to the map before pooling (RepLKNet) instead of after.
        """
        self.features_only = False
        self.out_indices = tuple(range(len(self.stages)))
        self.norm_first = norm_first
        self.norm = norm
        self.global_pool = self._make_pool(global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head_hidden_size = self.num_features

    def _init_backbone(self, out_indices: Sequence[int]) -> None:
        """Dense-prediction backbone: no classifier, ``forward`` returns the stages ``out_indices``."""
        num_stages = len(self.stages)
        indices = tuple(out_indices)
        if not indices or any(not -num_stages <= int(i) < num_stages for i in indices):
            valid = f"{-num_stages}..{num_stages - 1}"
            raise ConfigError(f"out_indices={indices} must be non-empty stage indices in {valid}")
        self.features_only = True
        self.norm_first = False
        self.num_classes = 0
        self.head_hidden_size = self.num_features
        self.out_indices = tuple(sorted({int(i) % num_stages for i in indices}))
        self.feature_info = FeatureInfo(self.feature_info, self.out_indices)

    @staticmethod
    def _make_pool(global_pool: str) -> nn.Module:
        if global_pool not in POOL_TYPES:
            raise ConfigError(f"global_pool={global_pool!r} is not supported; expected one of {sorted(POOL_TYPES)}")
        return SelectAdaptivePool2d(pool_type=POOL_TYPES[global_pool], flatten=bool(global_pool))

    def _choose_fast_path(self) -> None:
        """Apply ``$UNILK_FAST_PATH`` and ``$UNILK_LKCONV`` (read here, once, when the model is built) to every layer
        with a fast form; a bad value fails here, not in a forward."""
        self.fast_path = fast_path_from_env()
        self.lkconv_mode = mode_from_env()
        self._apply_fast_path()

    def _apply_fast_path(self) -> None:
        set_fast_path(self, self.fast_path)
        set_lkconv_mode(self, self.lkconv_mode)

    def _scale_head_init(self, head_init_scale: float) -> None:
        if isinstance(getattr(self, "head", None), nn.Linear) and not self.head.weight.is_meta:
            with torch.no_grad():
                self.head.weight.mul_(head_init_scale)
                self.head.bias.mul_(head_init_scale)

    # ---- timm's contract ------------------------------------------------------------------------------------------

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def set_fast_path(self, enabled: bool = True) -> "LargeKernelTrunk":
        """Run the fast forms (True, the default) or the plain bit-reference PyTorch build (False), in place.

        The fast forms (fused block tails, routed depthwise convolutions, fast ``LayerNorm2d``, channels-last stem)
        equal the plain build to float rounding (docs/performance.md, exactness policy). ``$UNILK_FAST_PATH=0`` sets
        False when the model is built.

        Returns:
            The model.
        """
        self.fast_path = bool(enabled)
        set_fast_path(self, self.fast_path)
        return self

    @torch.jit.ignore
    def set_lkconv_mode(self, mode: str = "auto") -> "LargeKernelTrunk":
        """Choose the large-kernel convolution algorithm of every depthwise conv (``auto``, the default, picks the
        fastest exact one per shape; see :mod:`unilk.ops.lkconv`), in place. ``$UNILK_LKCONV`` sets it when the model
        is built.

        Raises:
            ConfigError: unknown mode.

        Returns:
            The model.
        """
        set_lkconv_mode(self, mode)
        self.lkconv_mode = mode
        return self

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The classifier module (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (0: identity, the model returns pooled features), keeping the pooling unless given.

        Args:
            num_classes: new number of classes.
            global_pool: '', 'avg', 'max' or 'avgmax'; None keeps the current pooling.

        Raises:
            ConfigError: in backbone (features_only) mode, or for an unsupported pooling.
        """
        if self.features_only:
            raise ConfigError(
                f"reset_classifier: a features_only {type(self).__name__} has no head; build it without features_only"
            )
        if global_pool is not None:
            self.global_pool = self._make_pool(global_pool)
        reference = next(self.parameters())
        self.num_classes = num_classes
        self.head = (
            nn.Linear(self.num_features, num_classes, device=reference.device, dtype=reference.dtype)
            if num_classes > 0
            else nn.Identity()
        )
        self.head.train(self.training)

    def _stage_input(self, index: int, x: Tensor) -> Tensor:
        """What runs before stage ``index``: the stem for 0, a downsampling or transition layer after."""
        raise NotImplementedError

    def _prune_stage_inputs(self, num_stages: int) -> None:
        """Drop the stem/downsampling layers of stages ``num_stages`` and after."""
        raise NotImplementedError

    @torch.jit.unused
    def _stage_norm(self, index: int, x: Tensor) -> Tensor:
        """The backbone's norm of stage ``index`` (official ``norm{i}``); identity where the family has none."""
        return getattr(self, f"norm{index}")(x)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs (timm's intermediate-feature API).

        Args:
            x: ``(N, in_chans, H, W)``.
            indices: None (all stages), an int (the last n) or stage indices (negative count from the end).
            norm: apply the backbone's per-stage norms (backbone mode only, where the official keys have them).
            stop_early: stop after the last requested stage.
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list.

        Returns:
            The list of ``(N, C_i, H_i, W_i)`` stage maps, or ``(last_map, list)``.

        Raises:
            ConfigError: for another output format, or ``norm=True`` without per-stage norms.
        """
        if not torch.jit.is_scripting():
            self._check_intermediates_args(norm, output_fmt)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_index = max_index if stop_early or intermediates_only else len(self.stages) - 1
        intermediates: list[Tensor] = []
        for i, stage in enumerate(self.stages):
            if i <= last_index:
                x = stage(self._stage_input(i, x))
                if i in take_indices:
                    intermediates.append(self._stage_norm(i, x) if norm else x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    @torch.jit.unused
    def _check_intermediates_args(self, norm: bool, output_fmt: str) -> None:
        if output_fmt != "NCHW":
            raise ConfigError(f"forward_intermediates: output_fmt={output_fmt!r} is not supported; expected 'NCHW'")
        if norm and not self.features_only:
            raise ConfigError("forward_intermediates: norm=True needs the per-stage norms of features_only=True")

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Remove the stages after the last wanted one (and the head), for feature extraction.

        Args:
            indices: the stage indices to keep (as in ``forward_intermediates``).
            prune_norm: drop the head norm too.
            prune_head: drop the classifier (pooling kept as pass-through).

        Returns:
            The absolute indices taken.
        """
        num_stages = len(self.stages)
        take_indices, max_index = feature_take_indices(num_stages, indices)
        prune_end = max_index < num_stages - 1
        self.stages = self.stages[: max_index + 1]
        self._prune_stage_inputs(max_index + 1)
        if self.features_only:
            self.out_indices = tuple(i for i in self.out_indices if i <= max_index)
            return take_indices
        if prune_end:
            self.feature_info = self.feature_info[: max_index + 1]
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_norm or prune_end:  # the head norm is sized for (and only applied after) the last stage
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: Tensor) -> Tensor:
        """``(N, in_chans, H, W) -> (N, num_features, H / 32, W / 32)``: the last-stage map before the head."""
        for i, stage in enumerate(self.stages):
            x = stage(self._stage_input(i, x))
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Norm, pool and classify.

        Args:
            x: ``(N, num_features, h, w)`` from ``forward_features``.
            pre_logits: return the pooled, normalised embedding instead of logits.

        Returns:
            ``(N, num_classes)`` logits, the ``(N, num_features)`` embedding, or with ``global_pool=''`` the
            normalised ``(N, num_features, h, w)`` map.
        """
        if self.norm_first:
            x = self.global_pool(self.norm(x))
        else:
            x = self.global_pool(x)
            # the official head normalises the pooled vector; unpooled, the same norm acts on each pixel's channels
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) if self.global_pool.is_identity() else self.norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(N, num_classes)``, or in backbone mode the list of normalised stage maps."""
        if self.features_only:
            features = self.forward_intermediates(x, list(self.out_indices), norm=True, intermediates_only=True)
            assert isinstance(
                features, list
            )  # intermediates_only returns the list alone (refines the type for TorchScript)
            return features
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    @torch.no_grad()
    def reparameterize(self) -> None:
        """Re-parameterize every layer with a training-time structure, in place (idempotent).

        The model then equals a ``deploy=True`` build of the same arguments: same keys, same outputs up to float
        rounding (BatchNorms must hold their inference statistics, i.e. call it in ``eval()`` use).
        """
        for module in list(self.modules()):
            if module is not self and hasattr(module, "reparameterize"):
                module.reparameterize()
        self._apply_fast_path()  # the new convs follow the model's choice
        self.deploy = True
